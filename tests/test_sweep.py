"""Sweeps: resume (skip jobs that finished ok), failure tolerance, study files, W&B grouping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import FAST, ROOT, train_cli

from transferlab.errors import ConfigError
from transferlab.sweep import check_study, find_finished, normalize, objective_value, run_key

STUDIES = sorted((ROOT / "sweeps").glob("*.yaml"))
TINY = [*FAST, "logger=none", "callbacks.checkpoint=null", "data.train_per_class=2"]


def _result(run_dir: Path, status: str = "ok", **cfg) -> dict:
    config = {
        "seed": 0,
        "paths": {"output_dir": str(run_dir)},
        "callbacks": {"ckpt": {"dirpath": f"{run_dir}/ckpt"}},
        **cfg,
    }
    result = {"status": status, "config": config, "metrics": {"val/acc": 0.5}}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(result))
    return result


def test_run_key_ignores_run_dir_but_not_settings(tmp_path: Path):
    a = _result(tmp_path / "a")["config"]
    assert normalize(a)["callbacks"]["ckpt"]["dirpath"] == "<run_dir>/ckpt"
    assert run_key(a) == run_key(_result(tmp_path / "elsewhere" / "b")["config"])
    assert run_key(a) != run_key(_result(tmp_path / "c", seed=1)["config"])
    assert run_key(a) == run_key({**a, "rerun": True})


def test_find_finished_only_matches_ok_results(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _result(sweep / "failed", status="failed", lr=1)
    _result(sweep / "ok", lr=2)
    probe = tmp_path / "new"
    assert find_finished(sweep, _result(probe, lr=1)["config"]) is None
    assert find_finished(sweep, _result(probe, lr=2)["config"]) == sweep / "ok" / "results.json"


def test_equal_numbers_are_the_same_setting(tmp_path: Path):
    """`adaptation.weight=1` after a YAML default of 1.0 is the finished job; True is not the setting 1."""
    one = _result(tmp_path / "a", adaptation={"weight": 1.0, "lrs": [0.5, 2.0]})["config"]
    assert run_key(one) == run_key(_result(tmp_path / "b", adaptation={"weight": 1, "lrs": [0.5, 2]})["config"])
    assert run_key(one) != run_key(_result(tmp_path / "c", adaptation={"weight": 1.5, "lrs": [0.5, 2]})["config"])
    flag = _result(tmp_path / "d", adaptation={"weight": True, "lrs": [0.5, 2]})["config"]
    assert run_key(flag) != run_key(one) and normalize(flag)["adaptation"]["weight"] is True
    assert normalize(one)["adaptation"] == {"weight": 1, "lrs": [0.5, 2]}
    sweep = tmp_path / "sweep"
    _result(sweep / "default", adaptation={"weight": 1.0})
    assert find_finished(sweep, _result(tmp_path / "new", adaptation={"weight": 1})["config"]) is not None


def test_objective_value():
    assert objective_value({"status": "ok", "metrics": {"val/acc": 0.8}}, "val/acc") == 0.8
    assert math.isnan(objective_value({"status": "failed"}, "val/acc")) and math.isnan(objective_value(None, "val/acc"))
    with pytest.raises(ConfigError, match="objective 'val/loss'.*val/acc"):
        objective_value({"status": "ok", "metrics": {"val/acc": 0.8}}, "val/loss")


def compose_study(study_dir: Path, name: str, overrides: list[str] | None = None):
    """Compose a study file as `train.py --config-dir DIR --config-name NAME` would, with HydraConfig set."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    GlobalHydra.instance().clear()
    search = create_config_search_path(str(study_dir))
    search.append("main", "pkg://transferlab.conf", anchor="main")
    hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=search)
    cfg = hydra.compose_config(name, overrides or [], run_mode=RunMode.MULTIRUN, with_log_configuration=False)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.mark.parametrize("study", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_files_compose_and_pass_the_key_check(study: Path):
    cfg = compose_study(study.parent, study.stem)
    check_study(cfg)
    assert cfg.sweep_name == study.stem and cfg.hydra.sweep.dir == f"multirun/{study.stem}/small"
    # a grid for `train.py -m`, or a search space for `python -m transferlab.search` (tests/test_scaleout.py)
    assert cfg.search.params if "search" in cfg else cfg.hydra.sweeper.params, "a study sweeps something"
    full = compose_study(study.parent, study.stem, ["scale=full"])
    assert full.data.image_size == 224 and full.trainer.max_steps > cfg.trainer.max_steps


def test_unknown_key_in_study_file(tmp_path: Path):
    (tmp_path / "typo.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nsweep_name: typo\nsead: 1\n"
        "trainer:\n  max_epoch: 3\n  gradient_clip_val: 1.0\n"
    )
    with pytest.raises(ConfigError, match=r"sets sead, trainer.max_epoch: neither keys"):
        check_study(compose_study(tmp_path, "typo"))


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_launchers_compose(launcher: str):
    if launcher == "slurm":
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'transferlab[slurm]'")
    proc = train_cli([f"hydra/launcher={launcher}", "--cfg", "hydra"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"local": "JoblibLauncher", "slurm": "SlurmLauncher"}[launcher] in proc.stdout
    assert "transferlab_sweeper.TransferlabSweeper" in proc.stdout  # the sweeper (config.yaml's default)


def _config_loader():
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path("pkg://transferlab.conf"))


def test_sweeper_validates_one_job_per_config_tree():
    from hydra_plugins.transferlab_sweeper.transferlab_sweeper import representatives

    strategies = ("full", "lora", "partial", "feature_extraction")
    grid = [
        [f"strategy={s}", f"data.train_per_class={n}", f"seed={k}"]
        for s in strategies
        for n in (64, 16, 4)
        for k in (0, 1)
    ]
    reps = representatives(grid, _config_loader())
    assert reps == [grid[6 * i] for i in range(4)]  # the size study's 36 jobs compose 4 (one per strategy)
    # what can change whether a job composes stays apart: a group option, a hydra setting, the kind of override
    # (=, +, ~), a dict value (it may add keys), a different key
    apart = [
        ["seed=0"],
        ["backbone=lenet"],
        ["hydra.job.chdir=true"],
        ["hydra.job.chdir=false"],
        ["+extra=1"],
        ["~seed"],
        ["head={dropout: 0.1}"],
        ["head={bottleneck: 8}"],
        ["data.batch_size=8"],
    ]
    assert representatives([*apart, ["seed=1"], ["+extra=2"], ["data.batch_size=16"]], _config_loader()) == apart


def test_sweep_that_does_not_compose_is_refused_before_any_job_runs(tmp_path: Path):
    sweep = tmp_path / "sweep"
    # strategy.r exists for lora only: (full, r) fails to compose, whichever r; lora's jobs would run fine
    proc = train_cli(
        ["-m", f"hydra.sweep.dir={sweep}", "strategy=lora,full", "strategy.r=4,8", "seed=0,1"], timeout=120
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Could not override 'strategy.r'" in proc.stderr and "Key 'r' is not in struct" in proc.stderr
    assert not [p for p in sweep.glob("*") if p.is_dir()], "no job started"


def _results(sweep: Path) -> dict[str, dict]:
    """The live result of each job dir (runs set aside under replaced/ are archived: `sweep.iter_results`)."""
    from transferlab.sweep import iter_results

    return {p.parent.name: r for p, r in iter_results(sweep)}


@pytest.mark.slow
def test_failed_job_recorded_and_resume_runs_only_missing_or_failed(tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=local",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        *TINY,
        "strategy.lr=0.01,-1",
        "seed=0,1",
    ]
    first = train_cli(args, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    res = _results(sweep)
    assert len(res) == 4
    failed = {k for k, r in res.items() if r["status"] == "failed"}
    assert {k for k in failed} == {k for k in res if "strategy.lr=-1" in k}
    assert all("strategy.lr=-1" in res[k]["error"] for k in failed)
    # simulate a sweep killed before seed=1 finished: its result is missing
    missing = next(k for k in res if k not in failed and "seed=1" in k)
    (sweep / missing / "results.json").unlink()
    kept = next(k for k in res if k not in failed and k != missing)
    stamps = {k: (sweep / k / "results.json").stat().st_mtime_ns for k in res if k != missing}

    second = train_cli(args, timeout=400)
    assert second.returncode == 0, second.stderr[-3000:]
    again = _results(sweep)
    assert len(again) == 4 and again[missing]["status"] == "ok"
    assert (sweep / kept / "results.json").stat().st_mtime_ns == stamps[kept]  # skipped: not run again
    assert all((sweep / k / "results.json").stat().st_mtime_ns > stamps[k] for k in failed)  # failed: run again
    assert all(
        json.loads((sweep / k / "replaced" / "1" / "results.json").read_text())["status"] == "failed" for k in failed
    )
    log = "".join((sweep / k / "train.log").read_text() for k in again)
    assert log.count("skipping job") == 1 and "finished ok before" in log

    from transferlab.report import build_report

    text = build_report(sweep).read_text()
    assert "4 jobs (2 ok, 2 failed)" in text and "strategy.lr=-1" in text


@pytest.mark.slow
def test_wandb_one_offline_run_per_job_in_the_sweep_group(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = train_cli(
        [
            "-m",
            f"hydra.sweep.dir={sweep}",
            *TINY,
            "logger=wandb",
            "+sweep_name=wbtest",
            "strategy=feature_extraction,partial",
        ],
        timeout=300,
        env={"WANDB_API_KEY": "", "WANDB_MODE": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = sorted(sweep.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 2, list(sweep.rglob("*"))
    from test_loggers import wandb_records  # the .wandb transaction-log reader

    records = [wandb_records(p) for p in logs]
    runs = [next(r.run for r in recs if r.WhichOneof("record_type") == "run") for recs in records]
    assert {r.run_group for r in runs} == {"wbtest"}
    assert {r.job_type for r in runs} == {"feature_extraction", "partial"}
    assert len({r.run_id for r in runs}) == 2
    for recs in records:  # the swept keys are in each run's config (sent by log_hyperparams)
        config = {
            i.key: json.loads(i.value_json)
            for r in recs
            if r.WhichOneof("record_type") in ("run", "config")
            for i in (r.run.config.update if r.WhichOneof("record_type") == "run" else r.config.update)
        }
        assert config["seed"] == 0 and config["data"]["train_per_class"] == 2
        assert config["strategy"]["_target_"].startswith("transferlab.strategies.")
