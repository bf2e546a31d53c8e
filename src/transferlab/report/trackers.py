"""Push a report to the trackers the sweep's jobs logged to.

W&B (`--wandb`): a run of job_type "report" in the sweep's group and project (the jobs' `logger.wandb`
settings, else `sweep_name`, else the sweep dir as `infra.loggers.sweep_group` names it) holding the table
(`wandb.Table`: mean ± CI per method x size, and the winners) and the plots (`wandb.Image`). Without an API
key the run is written offline under `<report dir>/wandb/` and `wandb sync <dir>` uploads it later.

MLflow (`--mlflow [URI]`): a run named "report" in the sweep's experiment and store (default
`<sweep dir>/mlflow.db`, where `logger=mlflow` jobs of a multirun go) with report.md, report.csv and the
plots as artefacts.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from transferlab.errors import DataError
from transferlab.report.stats import winners


@dataclass
class Report:
    """What `build_report` produced: the runs, the aggregated table, the plots and report.md."""

    runs: pd.DataFrame
    table: pd.DataFrame
    figures: dict[str, Path]
    path: Path
    metric: str

    @property
    def files(self) -> list[Path]:
        return [self.path, self.path.with_name("report.csv"), *self.figures.values()]


def _one(runs: pd.DataFrame, key: str) -> str | None:
    """The value of a config key when all runs that set it agree, else None."""
    values = {f.get(key) for f in runs["_flat"]} - {None}
    return next(iter(values)) if len(values) == 1 else None


def wandb_target(runs: pd.DataFrame, sweep_dir: Path | str) -> tuple[str, str]:
    """(project, group) the sweep's jobs logged to."""
    from transferlab.infra.loggers import sweep_group

    project = _one(runs, "logger.wandb.project") or "transferlab"
    return project, _one(runs, "logger.wandb.group") or _one(runs, "sweep_name") or sweep_group(sweep_dir)


def _plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return v.item() if hasattr(v, "item") else v


def wandb_table(df: pd.DataFrame):
    """A `wandb.Table` of `df` (NaN -> empty)."""
    import wandb

    return wandb.Table(columns=list(df.columns), data=[[_plain(v) for v in row] for row in df.to_numpy(object)])


def to_wandb(report: Report, sweep_dir: Path | str) -> str:
    """Log the report as a W&B run of job_type "report" in the sweep's group; returns what to tell the user."""
    import wandb

    from transferlab.infra.loggers import sync_hint, wandb_offline

    project, group = wandb_target(report.runs, sweep_dir)
    offline = wandb_offline()
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"report: {group}",
        tags=["report"],
        dir=str(report.path.parent),
        mode="offline" if offline else "online",
        config={"sweep_dir": str(sweep_dir), "metric": report.metric, "jobs": len(report.runs)},
    )
    images = {
        f"report/{name.replace(' ', '_')}": wandb.Image(str(p), caption=name) for name, p in report.figures.items()
    }
    table, best = wandb_table(report.table), wandb_table(pd.DataFrame(winners(report.table)))
    run.log({"report/table": table, "report/winners": best, **images})
    for f in report.files[:2]:
        shutil.copyfile(f, Path(run.dir) / f.name)
        run.save(str(Path(run.dir) / f.name), base_path=run.dir, policy="now")
    told = sync_hint(run) if offline else f"W&B: report logged to {run.url} (group {group})"
    run.finish()
    return told


def to_mlflow(report: Report, sweep_dir: Path | str, tracking_uri: str | None = None) -> str:
    """Log report.md, report.csv and the plots as artefacts of an MLflow run "report" in the sweep's store."""
    from mlflow.tracking import MlflowClient

    if not tracking_uri:
        db = Path(sweep_dir).absolute() / "mlflow.db"
        if not db.is_file():
            raise DataError(
                f"no MLflow store at {db}: the sweep's jobs did not log to MLflow (logger=mlflow in a multirun); "
                "pass the store with --mlflow sqlite:///<path>/mlflow.db"
            )
        tracking_uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri)
    name = _one(report.runs, "logger.mlflow.experiment_name") or _one(report.runs, "sweep_name") or "transferlab"
    found = client.get_experiment_by_name(name)
    store = Path(tracking_uri.removeprefix("sqlite:///")).parent if tracking_uri.startswith("sqlite:///") else None
    where = (store / "mlartifacts").as_uri() if store else None  # as the jobs' logger does (infra.loggers.mlflow)
    exp_id = found.experiment_id if found else client.create_experiment(name, artifact_location=where)
    run = client.create_run(exp_id, run_name="report", tags={"job_type": "report"})
    for f in report.files:
        client.log_artifact(run.info.run_id, str(f))
    client.set_terminated(run.info.run_id)
    return f"MLflow: report logged as run 'report' ({run.info.run_id}) of experiment '{name}' in {tracking_uri}"
