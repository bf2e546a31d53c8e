"""Checks and settings before a run builds anything heavy."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig

from transferlab.errors import ConfigError, TrainingError, TransferlabError


def quiet_lightning() -> None:
    """One log handler (Hydra's: console + run-dir file) instead of Lightning's extra ones."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _read(path: Path) -> dict | None:
    """The checkpoint's contents (memory-mapped, tensors not read), or None when it can't be loaded."""
    import torch

    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # truncated, corrupt, not a checkpoint: torch/zipfile raise many types
        return None


def _stamp(ckpt: dict) -> dict:
    """The ResumeState stamp (backbone, strategy, classes) a transferlab checkpoint carries."""
    for state in (ckpt.get("callbacks") or {}).values():
        if isinstance(state, dict) and isinstance(state.get("stamp"), dict):
            return state["stamp"]
    return {}


def check_ckpt_path(cfg: DictConfig) -> dict | None:
    """`ckpt_path` must name a loadable checkpoint (or "last": last.ckpt in this run dir).

    Returns `{"stamp": what it belongs to, "global_step": where it stopped}` (None without ckpt_path).

    A corrupt one is refused before anything is built, naming the intact checkpoints next to it.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return None
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt" if ckpt == "last" else Path(str(ckpt))
    if not path.is_file():
        hint = (
            "ckpt_path=last resumes the run in hydra.run.dir: pass the interrupted run's dir, e.g. "
            "`hydra.run.dir=outputs/2026-01-01/12-00-00 ckpt_path=last`"
            if ckpt == "last"
            else "point ckpt_path at an existing .ckpt file"
        )
        raise ConfigError(f"ckpt_path={ckpt}: no checkpoint at '{path}'. {hint}.")
    loaded = _read(path)
    if loaded is None:
        intact = [str(p) for p in sorted(path.parent.glob("*.ckpt")) if p != path and _read(p) is not None]
        fix = (
            f"Intact checkpoints in that folder: {', '.join(intact)}; resume from one with ckpt_path=<path>."
            if intact
            else "No intact checkpoint is left in that folder: start a new run (without ckpt_path)."
        )
        raise ConfigError(f"ckpt_path={ckpt}: '{path}' can't be loaded (corrupt or truncated). {fix}")
    return {"stamp": _stamp(loaded), "global_step": int(loaded.get("global_step", 0))}


def explain(e: BaseException) -> TransferlabError | None:
    """A known fault from the libraries underneath, as one clear error (None: not one of them)."""
    import os

    first = (str(e).strip().splitlines() or [""])[0]
    if type(e).__name__ == "MisconfigurationException":  # Lightning's own refusal of a setting: one message
        return ConfigError(f"Lightning refused a setting: {first}. Fix the trainer.* / hardware.* value it names.")
    if isinstance(e, MemoryError) or "not enough memory" in first or "Storage size calculation overflowed" in first:
        return TrainingError(
            f"out of memory ({type(e).__name__}: {first[:200]}): the model, batch or images are larger than this "
            "machine holds. Lower data.batch_size / data.image_size, or check sizes such as head.bottleneck and "
            "strategy.r (`plan.enabled=true` prints the memory plan without loading anything).",
            details={"reason": "out_of_memory"},
        )
    if type(e).__name__ in ("DistNetworkError", "DistStoreError") or "TCPStore" in first:
        where = f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', '?')}"
        return TrainingError(
            f"the distributed processes could not reach each other at {where} ({type(e).__name__}: {first[:200]}). "
            "On one machine the loopback interface must be up (`ip link set lo up`); across nodes MASTER_ADDR / "
            "MASTER_PORT must be reachable from every node. The wait is bounded by "
            "hardware.strategy.timeout.seconds. Or train in one process: hardware=cpu.",
            details={"reason": "rendezvous"},
        )
    return None
