"""Exact resume: RNG states in the checkpoint, atomic checkpoint files, and a compatibility stamp.

Lightning checkpoints hold weights, optimizer, schedulers, loops and callback states, but not the
random-number generators: a resumed run would shuffle its next epoch differently. `ResumeState`
saves them (torch, numpy, python; CUDA when used) and puts them back before training continues.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from transferlab.errors import ConfigError, TrainingError


class ResumeState(L.Callback):
    """Saves the RNG states with every checkpoint and restores them when training resumes.

    Args:
        stamp: what must match to resume (backbone, strategy, classes, `training_settings`); a mismatch is an
            error naming each differing key.
    """

    def __init__(self, stamp: dict | None = None) -> None:
        self.stamp = stamp or {}
        self._restore: dict | None = None

    def state_dict(self) -> dict:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }  # tensors/ints: weights_only-safe
        state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate(), "stamp": self.stamp}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        refuse_other_run(state.get("stamp", {}), self.stamp)
        self._restore = state

    def on_train_start(self, trainer, pl_module) -> None:
        if self._restore is None:
            return
        s, self._restore = self._restore, None
        torch.set_rng_state(s["torch"])
        n = s["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        random.setstate(s["python"])
        if "cuda" in s and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda"])


# What a run's training depended on besides its weights: resuming with another value would silently train a
# different run under the checkpoint's history. Free to change: the budget (trainer.*), hardware, loggers,
# callbacks, paths, the cache, kernels and layout, and how data is loaded (workers, eval batch, where it lives).
RESUME_KEYS = (
    "seed",
    "strategy",
    "optimizer",
    "scheduler",
    "head",
    "adaptation",
    "da",
    "augment",
    "data",
    "backbone_dropout",
)
FREE_DATA_KEYS = ("num_workers", "eval_batch_size", "root", "target_root")


def training_settings(cfg) -> dict:
    """The resolved `RESUME_KEYS` sections of `cfg` as plain values (weights_only-safe in a checkpoint)."""
    import json

    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=True)
    out = {k: tree.get(k) for k in RESUME_KEYS}
    out["backbone_dropout"] = out["backbone_dropout"] or "after_trainable"  # null and absent mean the default
    if isinstance(out["data"], dict):
        out["data"] = {k: v for k, v in out["data"].items() if k not in FREE_DATA_KEYS}
    return json.loads(json.dumps(out, default=str))


def stamp_diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """`key: checkpoint A vs this run B` for each key both stamps have with different values (dotted, nested);
    keys a stamp lacks (a checkpoint from before they were stamped) are not compared."""
    out = []
    for key, value in current.items():
        if key not in saved:
            continue
        if isinstance(saved[key], dict) and isinstance(value, dict):
            out += stamp_diff(saved[key], value, f"{prefix}{key}.")
        elif saved[key] != value:
            out.append(f"{prefix}{key}: checkpoint {saved[key]!r} vs this run {value!r}")
    return out


# Settings a stamp lacks because they did not exist yet, with the behaviour the run had then: compared as such
SETTINGS_BEFORE = {"backbone_dropout": "frozen_subtrees"}  # added 2026-12-07; the rule before it


def refuse_other_run(saved: dict, current: dict) -> None:
    """ConfigError when checkpoint stamp `saved` is not this run's `current` (backbone, strategy, classes,
    training settings)."""
    saved = dict(saved or {})
    if isinstance(saved.get("settings"), dict):  # a settings stamp from before a setting existed
        saved["settings"] = {**SETTINGS_BEFORE, **saved["settings"]}
    diff = stamp_diff(saved, current)
    if diff:
        raise ConfigError(
            f"can't resume: the checkpoint was written by a different run ({'; '.join(diff)}). Resume with the "
            "same settings (only the budget, hardware, loggers, callbacks and paths may change), or start a new "
            "run without ckpt_path."
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place.

    A kill (or a full disk) during a save leaves the previous `last.ckpt` intact, never a torn file.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(checkpoint, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            kept = f"the previous '{path.name}' there is intact" if path.exists() else f"no '{path.name}' was written"
            raise TrainingError(
                f"disk full while writing checkpoint '{path}' ({e.strerror}): {kept}. Free space (or point "
                "callbacks.checkpoint.dirpath at another disk) and resume with ckpt_path=last.",
                details={"reason": "disk_full", "checkpoint": str(path)},
            ) from e
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
