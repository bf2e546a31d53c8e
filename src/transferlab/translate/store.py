"""Translators on disk: content keys, generator files with checksums, and applying a generator."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from transferlab.infra.paths import atomic_write
from transferlab.translate.cyclegan import CycleGAN

log = logging.getLogger("transferlab")
VERSION = "cyclegan-1"  # bump when the networks or losses change: old translators are then not reused


def content_key(source: torch.Tensor, target: torch.Tensor, settings: dict) -> str:
    h = hashlib.sha256(json.dumps({"version": VERSION, **settings}, sort_keys=True).encode())
    for x in (source, target):
        h.update(f"{tuple(x.shape)}|{x.dtype}".encode())
        h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _state_checksum(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def translate(generator: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, device="cpu") -> torch.Tensor:
    """`(N, C, S, S)` in [0, 1] -> G(images) in [0, 1] (on the CPU), computed on `device` (the translator's
    accelerator: a 9-block ResNet generator costs ~50 GFLOPs per 256 px image); the generator ends where it was."""
    from transferlab.model.run_device import placed

    if torch.device(device).type != "cpu":  # activations of 256 images at 256 px would take >10 GB of GPU memory;
        batch_size = max(8, min(batch_size, batch_size * 64**2 // images.shape[-1] ** 2))  # same outputs, per image
    with placed(generator.eval(), device):  # back where it was: on the CPU after fitting or loading
        out = [
            ((generator(images[i : i + batch_size].to(device) * 2 - 1) + 1) / 2).cpu()
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(out).clamp_(0, 1)


def save_generators(model: CycleGAN, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith("g_")}
    atomic_write(
        path, lambda tmp: save_file(state, str(tmp), metadata={"sha256": _state_checksum(state), "version": VERSION})
    )


def load_generators(model: CycleGAN, path: Path) -> bool:
    """Load a finished translator's generators; False when absent, corrupt or from another version."""
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        if meta.get("sha256") != _state_checksum(state) or meta.get("version") != VERSION:
            raise ValueError("checksum or version mismatch")
        missing = model.load_state_dict(state, strict=False).missing_keys
        if any(k.startswith("g_") for k in missing):
            raise ValueError(f"missing generator weights {missing[:3]}")
        return True
    except Exception as e:  # (torn, corrupt, tampered or incompatible: train again)
        log.warning("translator file %s can't be used (%s): training the translator again", path, e)
        path.unlink(missing_ok=True)
        return False
