"""Loggers that need a decision at run time, and what every tracker receives when a run ends.

CSV: a history that survives a resume. W&B: online or offline from the credentials, a sweep's jobs in one
group. MLflow: one sqlite store per sweep (`<sweep dir>/mlflow.db`; single runs: `outputs/mlflow.db`).
`finish(loggers, result, out_dir)`, once results.json is written: TensorBoard HParams with the final metrics,
results.json as an MLflow / W&B artefact, each logger closed with the run's status.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from transferlab.infra import results, tracking
from transferlab.infra.tracking import sweep_dir, sweep_group, sync_hint, wandb_credentials, wandb_offline  # noqa: F401

log = logging.getLogger("transferlab")


class _HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing metrics.csv is kept (Lightning deletes it at start).

    `keep_before`: rows at or after this global step came from an attempt that was interrupted after the
    checkpoint being resumed; they are dropped (the resumed run logs those steps again). None: a new run,
    the file is started afresh.
    """

    def __init__(self, log_dir: str, keep_before: int | None) -> None:
        self._keep_before = keep_before
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self._keep_before is None:
            path.unlink()  # a new run in this dir (the run-dir guard moved any earlier run aside)
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step") in (None, "") or int(float(r["step"])) < self._keep_before]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)


class HistoryCSVLogger(CSVLogger):
    """Lightning's `CSVLogger` whose metrics.csv keeps the history before a resume (`ckpt_path=...`).

    The run calls `resume_at(global_step)` before training; without it the logger behaves as Lightning's.
    """

    _keep_before: int | None = None

    def resume_at(self, global_step: int | None) -> None:
        self._keep_before = global_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(self.log_dir, self._keep_before)
        return self._experiment


def wandb(
    save_dir: str,
    project: str,
    group: str | None = None,
    job_type: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    offline: bool | None = None,
    seed: int | None = None,
    train_per_class: int | None = None,
    **kwargs,
):
    """A Lightning `WandbLogger`, offline automatically when there is no API key.

    Offline runs are written under `save_dir/wandb/offline-run-*`; the run logs the `wandb sync <dir>`
    command that uploads it. `WANDB_MODE` in the environment still wins, as in plain wandb.

    Args:
        save_dir: run directory (the Hydra job dir).
        project, job_type, name: W&B run fields (job_type = the strategy).
        group: W&B group; null: the sweep dir (`sweep_group`) for a multirun's job, none for a single run.
        tags: extra tags; `seed=<seed>` and `per_class=<n>` are added (and `n=<train size>` when the run ends).
        offline: force offline (True) / online (False); null = decide from credentials.
    """
    from lightning.pytorch.loggers import WandbLogger

    offline = wandb_offline(offline)
    os.environ.setdefault("WANDB_SILENT", "true")
    sweep = sweep_dir()
    extra = [f"seed={seed}"] if seed is not None else []
    extra += [f"per_class={train_per_class}"] if isinstance(train_per_class, int) else []
    earlier = tracking.earlier_id(save_dir, "wandb")  # a resume: the same W&B run
    if earlier:
        kwargs.setdefault("id", earlier)
        kwargs.setdefault("resume", "allow")
    logger = WandbLogger(
        save_dir=save_dir,
        project=project,
        group=group or (sweep_group(sweep) if sweep else None),
        job_type=job_type,
        tags=[*(tags or []), *extra],
        name=name,
        offline=offline,
        **kwargs,
    )
    if results.is_rank_zero():
        tracking.record_id(save_dir, "wandb", logger.experiment.id)
        if offline:
            log.info(sync_hint(logger.experiment, resumed=bool(earlier)))
    return logger


def mlflow_store(run_dir: Path | str) -> Path:
    """The sqlite file a run's MLflow records go to: `<sweep dir>/mlflow.db` for a multirun's job;
    `outputs/mlflow.db` for a single run in Hydra's default layout (outputs/DATE/TIME); else the run dir's."""
    sweep = sweep_dir()
    if sweep is not None:
        return sweep / "mlflow.db"
    outputs, run = Path.cwd() / "outputs", Path(run_dir).absolute()
    return (outputs if run.is_relative_to(outputs) else run) / "mlflow.db"


def mlflow(
    experiment_name: str,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    run_dir: str | None = None,
    tags: dict | None = None,
    **kwargs,
):
    """A Lightning `MLFlowLogger` whose runs share one tracking store per sweep (`mlflow_store`): sqlite (MLflow 3
    refuses new file stores), schema, experiment and run created under a file lock so that parallel jobs do not
    race; artefacts in `mlartifacts/` next to it. `mlflow ui --backend-store-uri sqlite:///<db>` shows every job.

    Args:
        experiment_name: MLflow experiment (the sweep name).
        run_name: the run's name (the strategy).
        tracking_uri: any MLflow URI (e.g. a server); null = the sqlite store from `mlflow_store(run_dir)`.
        run_dir: the run dir (`${paths.output_dir}`): where `mlflow_store` puts a single run's store and where the
            run id is kept for a resume (`infra.tracking`); null = the working dir's store, no resume.
        tags: extra run tags; other keyword arguments go to `MLFlowLogger`.
    """
    from filelock import FileLock
    from lightning.pytorch.loggers import MLFlowLogger

    if not tracking_uri:
        mlflow_store(run_dir or ".").parent.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{mlflow_store(run_dir or '.')}"
    db = Path(tracking_uri.removeprefix("sqlite:///")).absolute() if tracking_uri.startswith("sqlite:///") else None
    if db is not None:  # artefacts next to the store (MLflow's default: ./mlruns in the working dir)
        kwargs.setdefault("artifact_location", (db.parent / "mlartifacts").as_uri())
    if run_dir:
        kwargs.setdefault("run_id", tracking.earlier_id(run_dir, "mlflow"))  # a resume: the same MLflow run
    with FileLock(f"{db}.lock") if db is not None else contextlib.nullcontext():
        logger = MLFlowLogger(
            experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri, tags=tags, **kwargs
        )
        if results.is_rank_zero():
            logger.experiment  # noqa: B018  (creates the store, the experiment and the run, one job at a time)
            if run_dir:
                tracking.record_id(run_dir, "mlflow", logger.run_id)
    return logger


def hparams_of(result: dict) -> dict:
    """Hyper-parameters to compare runs by (TensorBoard HParams): group choices, seed, training-set size, and
    the scalar settings of the strategy and the adaptation (lr, r, weight, ...), a strategy's `auto` settings as
    they resolved on the run's backbone (results.json `strategy_choices`: what the run used)."""
    cfg = result.get("config") or {}
    out = {k: result.get(k) for k in ("strategy", "adaptation", "data", "seed", "train_per_class", "train_size")}
    out |= {"backbone": (result.get("backbone") or {}).get("name"), "norm": (result.get("norm") or {}).get("policy")}
    out |= {"batch_size": (cfg.get("data") or {}).get("batch_size"), "status": result.get("status")}
    for node in ("strategy", "adaptation"):
        out |= {f"{node}.{k}": v for k, v in (cfg.get(node) or {}).items() if not k.startswith("_")}
    out |= resolved(result)
    return {k: v for k, v in out.items() if isinstance(v, (bool, int, float, str))}


def final_metrics(result: dict) -> dict[str, float]:
    """The run's final val/ and test/ metrics (results.json `metrics`)."""
    metrics = result.get("metrics") or {}
    return {k: float(v) for k, v in metrics.items() if k.startswith(("val/", "test/")) and isinstance(v, (int, float))}


def tensorboard_hparams(logger, result: dict) -> None:
    """`hparams_of(result)` with the final metrics, also written as scalars at the last step (the HParams tab
    shows each metric's latest scalar)."""
    from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE

    if _TENSORBOARD_AVAILABLE:
        from torch.utils.tensorboard.summary import hparams
    else:
        from tensorboardX.summary import hparams

    metrics, step = final_metrics(result), int(result.get("global_step") or 0)
    if metrics:
        logger.log_metrics(metrics, step)
    writer = logger.experiment._get_file_writer()  # as Lightning's log_hyperparams(params, metrics) does
    for summary in hparams(hparams_of(result), metrics):
        writer.add_summary(summary, step)
    writer.flush()


def artefact_name(path: Path) -> str:
    """The name a tracker stores results.json under: `transferlab-results.json`, so that the copies in a sweep
    dir (offline W&B files, MLflow mlartifacts/) are never read as jobs of their own (`rglob("results.json")`)."""
    return f"transferlab-{path.name}"


def _mlflow_end(logger, result: dict, files: list[Path]) -> None:
    for f in files:
        logger.experiment.log_text(logger.run_id, f.read_text(), artefact_name(f))
    for key, value in {
        "status": result.get("status"),
        "train_size": result.get("train_size"),
        **resolved(result),
    }.items():
        logger.experiment.set_tag(logger.run_id, key, value)


def resolved(result: dict) -> dict:
    """`{"strategy.<key>": value}` for each `auto` setting as the run resolved it (results.json `strategy_choices`)."""
    return {f"strategy.{k}": c.get("used") for k, c in (result.get("strategy_choices") or {}).items()}


def _wandb_end(logger, result: dict, files: list[Path]) -> None:
    run = logger.experiment
    for f in files:  # a copy: the run dir may be moved aside later (run-dir guard), a link would break
        shutil.copyfile(f, Path(run.dir) / artefact_name(f))
        run.save(str(Path(run.dir) / artefact_name(f)), base_path=run.dir, policy="now")
    run.summary.update({k: result[k] for k in ("status", "train_size", "time_s") if result.get(k) is not None})
    run.summary.update(resolved(result))  # `auto` settings as used: the config says only "auto"
    if result.get("train_size") is not None:
        run.tags = (*run.tags, f"n={result['train_size']}")


def finish(loggers: list, result: dict, out_dir: Path | str) -> None:
    """End the run's loggers once results.json is written (also after a failure).

    TensorBoard: hyper-parameters with the final metrics (HParams tab). MLflow: results.json as an artefact,
    status and train_size tags. W&B: results.json in the run's files, status/train_size/time in the summary,
    an `n=<train size>` tag. Then each logger ends with the run's status (MLflow FINISHED / FAILED, W&B exit
    code). Copies are named `artefact_name(...)`. A tracker that fails here only logs a warning.
    """
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    ok = result.get("status") != "failed"
    files = [p for n in ("results.json", "results.resume-failed.json") if (p := Path(out_dir) / n).is_file()]
    for lg in loggers:
        try:
            if isinstance(lg, TensorBoardLogger) and results.is_rank_zero():
                tensorboard_hparams(lg, result)
            elif isinstance(lg, MLFlowLogger) and results.is_rank_zero():
                _mlflow_end(lg, result, files)
            elif isinstance(lg, WandbLogger) and results.is_rank_zero():
                _wandb_end(lg, result, files)
            lg.finalize("success" if ok else "failed")
            if isinstance(lg, WandbLogger):
                lg.experiment.finish(exit_code=0 if ok else 1)
        except Exception as e:  # a tracker's problem must not turn a finished run into a failed one
            log.warning("%s could not record the result: %s: %s", type(lg).__name__, type(e).__name__, e)
