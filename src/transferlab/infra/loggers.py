"""Logger factories that need a decision at run time (W&B online vs offline)."""

from __future__ import annotations

import netrc
import os
from pathlib import Path


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
