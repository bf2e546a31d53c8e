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
        stamp: what must match to resume (backbone, strategy, classes); a mismatch is an error.
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
        saved = state.get("stamp", {})
        diff = {k: (saved.get(k), v) for k, v in self.stamp.items() if k in saved and saved[k] != v}
        if diff:
            listing = "; ".join(f"{k}: checkpoint {a!r} vs this run {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(
                f"can't resume: the checkpoint was written by a different run ({listing}). "
                "Resume with the same backbone/strategy/data, or start a new run without ckpt_path."
            )
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
