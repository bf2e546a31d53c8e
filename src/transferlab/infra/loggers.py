"""Loggers that need a decision at run time: W&B online vs offline, a CSV history that survives a resume."""

from __future__ import annotations

import csv
import netrc
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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


def wandb_credentials() -> bool:
    """True when an API key is configured (WANDB_API_KEY or a netrc entry from `wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb(
    save_dir: str,
    project: str,
    group: str | None = None,
    job_type: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    offline: bool | None = None,
    **kwargs,
):
    """A Lightning `WandbLogger`, offline automatically when there is no API key.

    Offline runs are written under `save_dir/wandb/offline-run-*`; upload them later with
    `wandb sync <dir>`. `WANDB_MODE` in the environment still wins, as in plain wandb.

    Args:
        save_dir: run directory (the Hydra job dir).
        project, group, job_type, tags, name: W&B run fields (group = sweep name, job_type = strategy).
        offline: force offline (True) / online (False); null = decide from credentials.
    """
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE", "") in {"offline", "dryrun"} or not wandb_credentials()
    os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        group=group,
        job_type=job_type,
        tags=list(tags or []),
        name=name,
        offline=offline,
        **kwargs,
    )
