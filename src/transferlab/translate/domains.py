"""Bringing two image domains to one translator's format: sizes, channels, the images it may train on."""

from __future__ import annotations

import numpy as np
import torch

from transferlab.errors import ConfigError


def check_domains(source: tuple, target: tuple, channels: int | None, image_size: int | None) -> int:
    """The channel count to translate at; raises `ConfigError` for domains that can't be paired as set.

    Args:
        source, target: `(N, C, H, W)` shapes of the two domains' images (native size if `image_size` is null).
        channels: translate.channels (null = the domains must agree).
        image_size: translate.image_size (null = the domains must have the same size).
    """
    (cs, hs, ws), (ct, ht, wt) = source[1:], target[1:]
    if image_size is None and (hs, ws) != (ht, wt):
        raise ConfigError(
            f"translate: source images are {hs}x{ws} but target images are {ht}x{wt}, and translate.image_size is "
            "null. A translator maps images of one size: set translate.image_size=32 (or data.image_size=32, which "
            "it follows) to resize both domains."
        )
    if channels is None and cs != ct:
        kind = {1: "grayscale (1 channel)", 3: "RGB (3 channels)"}
        raise ConfigError(
            f"translate: the source domain is {kind.get(cs, f'{cs}-channel')} but the target is "
            f"{kind.get(ct, f'{ct}-channel')}. Set translate.channels=3 (gray replicated to RGB) or "
            "translate.channels=1 (RGB to luminance) to translate between them."
        )
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"translate.channels={channels} must be 1, 3 or null (the domains' own).")
    size = image_size or hs
    if size % 4:
        raise ConfigError(f"translate.image_size={size} must be divisible by 4 (the generator downsamples twice).")
    return channels or cs


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """`(N, C, S, S)` -> `(N, channels, S, S)`: gray replicated, or RGB to ITU-R 601 luminance."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    return (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def pool_indices(dom) -> np.ndarray:
    """Every index of a domain outside its val/test splits (independent of train_per_class and seed)."""
    held = np.concatenate([np.asarray(dom.val, dtype=np.int64), np.asarray(dom.test, dtype=np.int64)])
    return np.setdiff1d(np.arange(len(dom.labels)), held)
