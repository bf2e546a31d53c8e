"""`da.rng=isolated`: the target side of a domain-adaptation step draws on a random stream of its own.

A DA step runs the source batch, then the target batch and the adaptation loss. Dropout in the backbone, the
head or the discriminator draws from torch's global generator, so with one stream the target side shifts every
later source draw: a weight-0 control is then a different random draw of source-only, not source-only, and a
paired "method minus control" difference carries that noise. Isolated, the target side runs on a stream seeded
by the run's seed, the step and the part of the step, and the run's stream is given back untouched.
"""

from __future__ import annotations

import contextlib

import torch

_MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: spreads (seed, step, part) over the seed space


@contextlib.contextmanager
def own_stream(on: bool, base_seed: int, step: int, part: int, device: torch.device):
    """With `on`, the block draws from a generator state of its own (seeded by `base_seed`, `step`, `part`) and
    the global generators (CPU, and the run's CUDA device) are restored afterwards; otherwise a no-op."""
    if not on:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed((base_seed * _MIX + 2 * step + part) % 2**63)
        yield
