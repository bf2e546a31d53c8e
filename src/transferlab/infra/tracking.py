"""Tracker helpers without Lightning: W&B credentials and offline mode, the sweep a job belongs to, and the run
ids a run dir's trackers used, so that a resume (`ckpt_path=last`) continues the same W&B / MLflow run.

`<run dir>/trackers.json` holds `{"wandb": id, "mlflow": id}`. A run dir holds one only while it holds its run: a
new run in it is refused, `overwrite=true` and a sweep's re-run move it to `replaced/<n>/` with the rest.
"""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path

IDS = "trackers.json"


def earlier_id(run_dir: Path | str, tracker: str) -> str | None:
    """The run id `tracker` used in this run dir before (a resume continues it), or None."""
    path = Path(run_dir) / IDS
    try:
        return json.loads(path.read_text()).get(tracker) if path.is_file() else None
    except (OSError, ValueError):
        return None


def record_id(run_dir: Path | str, tracker: str, run_id: str) -> None:
    path = Path(run_dir) / IDS
    try:
        ids = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        ids = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**ids, tracker: run_id}, indent=1) + "\n")


def wandb_credentials() -> bool:
    """True when an API key is configured (WANDB_API_KEY or a netrc entry from `wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(offline: bool | None = None) -> bool:
    """`offline` when given; else offline when WANDB_MODE says so or no API key is configured."""
    env = os.environ.get("WANDB_MODE", "") in {"offline", "dryrun"}
    return offline if offline is not None else env or not wandb_credentials()


def sync_hint(run, resumed: bool = False) -> str:
    """The line an offline W&B run prints: where it is and the command that uploads it."""
    hint = f"W&B run '{run.name or run.id}' is offline (no API key, or WANDB_MODE=offline): nothing is uploaded yet. "
    hint += f"Upload it with: wandb sync {Path(run.dir).parent}"
    if resumed:  # wandb cannot resume an offline run (wandb/wandb#2423): the continuation is a second offline dir
        hint += (
            f". This resume continues run id {run.id} in a new offline dir (W&B cannot resume offline runs): sync "
            f"the earlier dir first, then this one with `wandb sync --id {run.id} --append`, or run online to resume"
        )
    return hint


def sweep_dir() -> Path | None:
    """The sweep dir (absolute) of the Hydra multirun this job is part of; None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).absolute() if hc.mode == RunMode.MULTIRUN else None


def sweep_group(path: Path | str) -> str:
    """The W&B group of a sweep without a `sweep_name`: its dir relative to ./multirun (e.g.
    `2025-05-01/12-00-00`), else relative to the working dir, else the dir's name."""
    path = Path(path).absolute()
    for base in (Path.cwd() / "multirun", Path.cwd()):
        if path != base and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.name
