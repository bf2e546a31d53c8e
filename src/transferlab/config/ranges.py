"""Numeric ranges of config values, checked from the config alone (no import): `schema` reports them.

Values consumed by code that does not check them itself (Lightning, torch, the head), and a few that the
strategy checks too, so the mistake is answered before torch is imported. (test, expected) per key.
"""

from __future__ import annotations

import re
import typing
from typing import Any


def _nonneg(v) -> bool:
    return v >= 0


def _limit(v) -> bool:
    """Lightning's limit_*_batches: a fraction of the loader (<= 1.0) or a whole number of batches."""
    return v >= 0 and (isinstance(v, int) or v <= 1.0)


def _names_or_pattern(v) -> bool:
    """LoRA's target_modules: a list of names, or one regular expression (peft's semantics) that compiles."""
    if not isinstance(v, str):
        return True
    try:
        re.compile(v)
    except re.error:
        return False
    return True


DEVICE_IDS = re.compile(r"\s*-?\d+(\s*,\s*\d+)*\s*,?\s*")  # `hardware.devices` as a string: "0,1", "-1", "2"
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")  # `memory_format` (transferlab.model.memory_format)
BACKBONE_DROPOUT = ("after_trainable", "all", "frozen_subtrees")  # `backbone_dropout` (transferlab.model.dropout)
# keys whose checks accept true/false (elsewhere a bool where a number belongs is refused)
BOOL_VALUED = {"fused_optimizer", "fill_uninitialized_memory", "depthwise_crop"}

# Values consumed by code that does not check them itself (Lightning, torch, the head); (test, expected).
RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "head.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "trainer.max_epochs": (lambda v: v == -1 or v >= 0, ">= 0 (or -1: no limit, with trainer.max_steps set)"),
    "trainer.max_steps": (lambda v: v == -1 or v >= 0, ">= 0 (or -1: no limit)"),
    "trainer.accumulate_grad_batches": (lambda v: v >= 1, ">= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.limit_train_batches": (_limit, "a fraction in [0, 1.0] or a whole batch count"),
    "trainer.limit_val_batches": (_limit, "a fraction in [0, 1.0] or a whole batch count"),
    "trainer.limit_test_batches": (_limit, "a fraction in [0, 1.0] or a whole batch count"),
    "trainer.gradient_clip_val": (_nonneg, ">= 0 (or null)"),
    "optimizer.lr": (lambda v: v > 0, "> 0"),
    # checked again by the strategy's constructor (for code that builds one); here before anything is imported
    "strategy.lr": (lambda v: v == "auto" or v > 0, "> 0 (or 'auto': feature_extraction)"),
    "strategy.dropout": (lambda v: v == "auto" or 0 <= v < 1, "'auto' or in [0, 1)"),
    "strategy.backbone_lr_mult": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "strategy.lr_decay": (lambda v: 0 < v <= 1, "in (0, 1] (1 = no decay; ~0.75 for LLRD)"),
    "optimizer.weight_decay": (_nonneg, ">= 0"),
    "strategy.merge_check": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "a number of test examples >= 1, or null (the whole test set)",
    ),
    "strategy.target_modules": (
        _names_or_pattern,
        r"a list of module names or a valid regular expression matching whole names (e.g. blocks\.6\..*conv_pw)",
    ),
    "data.max_bad_fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "head.bottleneck": (
        lambda v: isinstance(v, int) and 0 <= v <= 65536,
        "a width in [1, 65536] (e.g. 256), or 0/null for none",
    ),
    "da.forward": (lambda v: v in ("separate", "joint"), "'separate' or 'joint'"),
    "da.running_stats": (lambda v: v in ("both", "source", "target"), "'both', 'source' or 'target'"),
    "da.epoch": (lambda v: v in ("source", "longest"), "'source' or 'longest'"),
    "da.rng": (lambda v: v in ("isolated", "shared"), "'isolated' or 'shared'"),
    "memory_format": (lambda v: v in MEMORY_FORMATS, "'auto', 'channels_last' or 'contiguous'"),
    "fused_optimizer": (lambda v: v == "auto" or isinstance(v, bool), "'auto', true or false"),
    "depthwise_crop": (lambda v: v == "auto" or isinstance(v, bool), "'auto', true or false"),
    "fill_uninitialized_memory": (lambda v: isinstance(v, bool), "true or false"),
    "da.lr_mult": (lambda v: v > 0, "> 0"),
    "backbone_dropout": (lambda v: v in BACKBONE_DROPOUT, "'after_trainable', 'all' or 'frozen_subtrees'"),
    "data.split_seed": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "data.num_workers": (lambda v: isinstance(v, int) and 0 <= v <= 256, "a worker count in [0, 256]"),
    "data.batch_size": (lambda v: isinstance(v, int) and v <= 2**20, "a batch size <= 1048576"),
    "data.seed": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "data.image_size": (lambda v: isinstance(v, int) and 1 <= v <= 4096, "a side length in [1, 4096] (or null)"),
    "hardware.devices": (
        lambda v: (
            v in (-1, "auto")
            or (isinstance(v, int) and 1 <= v <= 1024)
            or isinstance(v, list)
            or (isinstance(v, str) and DEVICE_IDS.fullmatch(v) is not None)
        ),
        "a device count in [1, 1024], -1 / auto (all), or device ids (a list, or a string such as '0,1')",
    ),
    "hardware.num_nodes": (lambda v: isinstance(v, int) and 1 <= v <= 4096, "a node count in [1, 4096]"),
    "hardware.accelerator": (
        lambda v: isinstance(v, dict) or v in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
        "one of auto, cpu, gpu, cuda, mps, tpu",
    ),
}


def cpu_devices(tree: dict) -> list[str]:
    """A CPU run's `hardware.devices` that Lightning refuses only after the data and weights have loaded, with
    a bare TypeError: -1 (all devices) or a string of device ids. (A list reaches Lightning's own message.)"""
    hardware = tree.get("hardware") or {}
    devices = hardware.get("devices", "auto")
    ids = isinstance(devices, str) and DEVICE_IDS.fullmatch(devices) is not None  # other strings: RANGES says
    gpu_style = devices == -1 or (ids and not (devices.strip().isdigit() and int(devices) >= 1))
    if str(hardware.get("accelerator", "auto")) != "cpu" or isinstance(devices, bool) or not gpu_style:
        return []
    return [
        f"hardware.devices={devices!r}: on a CPU (hardware.accelerator=cpu) devices is the number of processes, an "
        "integer >= 1 (or auto); -1 (all devices) and device ids select GPUs. Use hardware.devices=1, or "
        "hardware=ddp_cpu for several CPU processes."
    ]
