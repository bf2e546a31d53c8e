"""Trackers: a sweep's jobs in one W&B group / one MLflow store, TensorBoard HParams, results as artefacts.

Real wandb (offline), MLflow (sqlite) and TensorBoard files, read back from disk; no mocks.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest
from conftest import FAST, compose

from transferlab.infra import loggers

TINY = [*FAST, "data.train_per_class=2", "callbacks.checkpoint=null"]


def wandb_records(path: Path) -> list:
    """The `Record` protobufs of a W&B transaction log (.wandb: LevelDB-style blocks of 32 KiB)."""
    from wandb.proto import wandb_internal_pb2

    data, out = path.read_bytes(), []
    assert data[:4] == b":W&B", path
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: too short for a header
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(chunks)
            out.append(rec)
            chunks = b""
    return out


def of_type(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def as_multirun_job(sweep: Path) -> None:
    """Make the composed config's HydraConfig that of a job of a multirun with sweep dir `sweep`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    hydra = HydraConfig.instance().cfg.hydra
    with read_write(hydra), open_dict(hydra):
        hydra.mode = RunMode.MULTIRUN
        hydra.sweep.dir = str(sweep)


@pytest.fixture(scope="module")
def sweep_job(tmp_path_factory) -> tuple[Path, Path, dict, str]:
    """One tiny job of a multirun (no sweep_name) logging to TensorBoard, MLflow and W&B at once."""
    from transferlab.run import run

    sweep = tmp_path_factory.mktemp("trackers") / "sweep"
    job = sweep / "strategy=feature_extraction"
    cfg = compose([*TINY, "logger=[tensorboard,mlflow,wandb]"], job)
    as_multirun_job(sweep)
    records: list[str] = []
    handler, logger = logging.Handler(), logging.getLogger("transferlab")
    handler.emit = lambda r: records.append(r.getMessage())
    level, _ = logger.level, logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as the CLI's logging config has it
    try:
        result = run(cfg)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert result["status"] == "ok", result.get("error")
    return sweep, job, result, "\n".join(records)


def test_wandb_job_in_the_sweep_group_with_tags_and_sync_command(sweep_job):
    sweep, job, result, log = sweep_job
    (log_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(log_file)
    runs = of_type(records, "run")
    assert runs[0].run_group == "sweep" == loggers.sweep_group(sweep)  # no sweep_name: the sweep dir
    assert runs[0].job_type == "feature_extraction"
    assert {"efficientnet_lite0", "digits", "seed=0", "per_class=2"} <= set(runs[0].tags)
    assert f"n={result['train_size']}" in runs[-1].tags  # added when the run ended
    summary = {i.key: json.loads(i.value_json) for s in of_type(records, "summary") for i in s.update}
    assert summary["status"] == "ok" and summary["train_size"] == result["train_size"]
    assert summary["strategy.lr"] == 3e-3  # the config's `auto`, as it resolved on this backbone
    saved = log_file.parent / "files" / "transferlab-results.json"
    assert json.loads(saved.read_text())["metrics"] == result["metrics"]
    assert f"wandb sync {log_file.parent}" in log  # the offline run says how to upload it


def test_mlflow_store_of_the_sweep_with_results_artefact(sweep_job):
    from mlflow.tracking import MlflowClient

    sweep, job, result, _ = sweep_job
    assert (sweep / "mlflow.db").is_file() and not (job / "mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("transferlab").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "feature_extraction"
    assert run.data.tags["strategy.lr"] == "0.003"  # the config's `auto`, as it resolved on this backbone
    assert run.data.tags["status"] == "ok" and run.data.metrics["test/acc"] == pytest.approx(
        result["metrics"]["test/acc"]
    )
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["transferlab-results.json"]
    assert (sweep / "mlartifacts").is_dir()
    assert not list(sweep.rglob("mlruns"))  # nothing in MLflow's default places


def test_tensorboard_hparams_with_final_metrics(sweep_job):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, job, result, _ = sweep_job
    events = EventAccumulator(str(job / "tensorboard")).Reload()
    content = events.PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in content.items()}
    hp = data["_hparams_/session_start_info"].session_start_info.hparams
    assert hp["strategy"].string_value == "feature_extraction" and hp["data"].string_value == "digits"
    assert hp["backbone"].string_value == "efficientnet_lite0"
    assert hp["seed"].number_value == 0 and hp["train_size"].number_value == result["train_size"]
    assert result["config"]["strategy"]["lr"] == "auto"  # logged as what it resolved to on this backbone
    assert hp["strategy.lr"].number_value == pytest.approx(result["strategy_choices"]["lr"]["used"]) == 3e-3
    metric_names = {m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos}
    assert {"test/acc", "val/acc"} <= metric_names
    assert events.Scalars("test/acc")[-1].value == pytest.approx(result["metrics"]["test/acc"])


def _job(db: str, name: str, status: str) -> None:
    """A job of a sweep that logs to MLflow: run in a forked process, next to another one."""
    lg = loggers.mlflow("study", run_name=name, tracking_uri=f"sqlite:///{db}")
    lg.log_hyperparams({"strategy": name, "lr": 0.01})
    for step in range(20):
        lg.log_metrics({"train/loss": 1 / (step + 1)}, step)
    out = Path(db).parent / name
    out.mkdir()
    result = {"status": status, "train_size": 20}
    (out / "results.json").write_text(json.dumps(result))
    loggers.finish([lg], result, out)


def test_two_parallel_jobs_share_one_mlflow_store(tmp_path, monkeypatch):
    import multiprocessing

    from mlflow.tracking import MlflowClient  # imported before the fork: the jobs start at once

    db = tmp_path / "mlflow.db"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # nothing may land in the working dir (MLflow's default ./mlruns)
    fork = multiprocessing.get_context("fork")
    jobs = [fork.Process(target=_job, args=(str(db), n, s)) for n, s in (("full", "ok"), ("partial", "failed"))]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=240)
        assert job.exitcode == 0
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    assert {r.info.run_name: r.info.status for r in runs} == {"full": "FINISHED", "partial": "FAILED"}
    for r in runs:
        assert len(client.get_metric_history(r.info.run_id, "train/loss")) == 20
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["transferlab-results.json"]
    assert len(list(tmp_path.glob("mlartifacts/*/artifacts/transferlab-results.json"))) == 2
    assert not list((tmp_path / "cwd").iterdir())


def test_mlflow_store_location(tmp_path, monkeypatch):
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.chdir(tmp_path)
    compose([], tmp_path / "outputs" / "2025-01-01" / "12-00-00")  # a single run (HydraConfig mode RUN)
    assert loggers.sweep_dir() is None
    assert loggers.mlflow_store("outputs/2025-01-01/12-00-00") == tmp_path / "outputs" / "mlflow.db"
    assert loggers.mlflow_store(tmp_path / "elsewhere") == tmp_path / "elsewhere" / "mlflow.db"
    as_multirun_job(tmp_path / "multirun" / "study" / "small")
    assert loggers.mlflow_store("anything") == tmp_path / "multirun" / "study" / "small" / "mlflow.db"
    assert loggers.sweep_group(tmp_path / "multirun" / "2025-01-01" / "12-00-00") == "2025-01-01/12-00-00"
    GlobalHydra.instance().clear()


def test_hparams_of_a_result():
    result = {
        "strategy": "lora",
        "adaptation": None,
        "data": "digits",
        "seed": 1,
        "train_per_class": None,
        "train_size": 2750,
        "backbone": {"name": "vit"},
        "norm": {"policy": "frozen"},
        "config": {"strategy": {"_target_": "x.LoRA", "lr": 0.001, "r": 8, "modules": ["q", "v"]}},
        "metrics": {"test/acc": 0.9, "val/acc": None, "train/loss": 0.1},
    }
    assert loggers.hparams_of(result) == {
        "strategy": "lora",
        "data": "digits",
        "seed": 1,
        "train_size": 2750,
        "backbone": "vit",
        "norm": "frozen",
        "strategy.lr": 0.001,
        "strategy.r": 8,
    }
    assert loggers.final_metrics(result) == {"test/acc": 0.9}


def test_a_resume_continues_the_same_mlflow_and_wandb_runs(tmp_path):
    """`ckpt_path=last` in the same run dir: MLflow logs into the same run (its metric history holds both parts),
    W&B reuses the run id (offline: a second offline dir of that id, and the sync hint says how to append)."""
    from conftest import run_config
    from mlflow.tracking import MlflowClient

    budget = ["strategy=partial", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"]
    budget.append("logger=[mlflow,wandb]")
    run_dir = tmp_path / "run"
    run_config([*budget, "trainer.max_epochs=1"], run_dir)
    ids = json.loads((run_dir / "trackers.json").read_text())
    resumed = run_config([*budget, "trainer.max_epochs=2", "ckpt_path=last"], run_dir)
    assert resumed["status"] == "ok"
    assert json.loads((run_dir / "trackers.json").read_text()) == ids  # the same runs, not new ones
    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("transferlab").experiment_id])
    assert run.info.run_id == ids["mlflow"] and run.info.status == "FINISHED"
    epochs = sorted({int(m.value) for m in client.get_metric_history(run.info.run_id, "epoch")})
    assert {0, 1} <= set(epochs)  # both parts of the run (epoch 0, then the resumed epoch 1) in one history
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(ids["wandb"]) for p in offline)
