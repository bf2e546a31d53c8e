"""Checks and settings before a run builds anything heavy."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig

from transferlab.errors import ConfigError


def quiet_lightning() -> None:
    """One log handler (Hydra's: console + run-dir file) instead of Lightning's extra ones."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def check_ckpt_path(cfg: DictConfig) -> None:
    """`ckpt_path` must name an existing file, or "last" with a last.ckpt in this run dir."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt" if ckpt == "last" else Path(str(ckpt))
    if not path.is_file():
        hint = (
            "ckpt_path=last resumes the run in hydra.run.dir: pass the interrupted run's dir, e.g. "
            "`hydra.run.dir=outputs/2026-01-01/12-00-00 ckpt_path=last`"
            if ckpt == "last"
            else "point ckpt_path at an existing .ckpt file"
        )
        raise ConfigError(f"ckpt_path={ckpt}: no checkpoint at '{path}'. {hint}.")
