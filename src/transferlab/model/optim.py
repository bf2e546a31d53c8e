"""Which kernel the optimizer's update runs on: `fused_optimizer` (false | true | auto) in the run config.

torch's optimizers have three implementations of the same update: a Python loop over the parameters (the
default for CPU tensors), `foreach` (batched per dtype/device; the default on CUDA) and `fused` (one kernel
over all parameters; AdamW, Adam, SGD and Adagrad, on CPU and CUDA). On this 2-core CPU the fused AdamW
step over EfficientNet-Lite0's 3.4M parameters is 3.5x faster than the loop, and whole fits 1.04-1.24x
shorter (BENCHMARKS.md P9). The fused kernel rounds differently (about one ulp per step), so its runs are
not bit-identical to the loop's, and an adversarial method amplifies that: one DANN seed's target accuracy
moved by 0.12 (P9). The default (`false`) therefore keeps torch's implementation, with which the committed
studies were run and are reproduced exactly; `true` asks for the fused kernel wherever the optimizer has one,
`auto` on a CPU only (accelerators not measured here). An explicit `optimizer.fused` or `optimizer.foreach`
in the config always wins. results.json `optimizer` records what was used and why.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

CHOICES = ("auto", True, False)


def _accepts_fused(cls: Any) -> bool:
    try:
        return "fused" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def choose(optimizer_fn: Any, optimizer_cfg: Any, setting: Any, accelerator: str) -> tuple[Any, dict]:
    """(optimizer partial, results.json `optimizer` section) for the configured optimizer `optimizer_fn`
    (a `functools.partial` of the optimizer class) under `fused_optimizer=setting` on `accelerator`."""
    cls = optimizer_fn.func if isinstance(optimizer_fn, functools.partial) else optimizer_fn
    name = getattr(cls, "__name__", str(cls))
    section: dict = {"name": name, "setting": setting}
    keys = set(optimizer_cfg.keys()) if optimizer_cfg is not None else set()
    if keys & {"fused", "foreach"}:
        explicit = {k: optimizer_cfg.get(k) for k in ("fused", "foreach") if k in keys}
        why = f"set in the optimizer: {explicit}"
        return optimizer_fn, {**section, "fused": bool(explicit.get("fused")), "why": why}
    if setting is None or setting is False:  # null: no preference, torch's default
        why = "fused_optimizer=false (the default): torch's implementation, as the committed studies ran"
        return optimizer_fn, {**section, "fused": False, "why": why}
    if not _accepts_fused(cls):
        why = f"{name} has no fused implementation: torch's default"
        return optimizer_fn, {**section, "fused": False, "why": why}
    import torch

    on_cpu = str(accelerator) == "cpu" or (str(accelerator) == "auto" and not torch.cuda.is_available())
    if setting == "auto" and not on_cpu:
        why = f"accelerator={accelerator}: not measured here, torch's default; fused_optimizer=true asks for it"
        return optimizer_fn, {**section, "fused": False, "why": why}
    why = "fused_optimizer=true" if setting is True else "a CPU run: the fused kernel is faster (BENCHMARKS.md P9)"
    return functools.partial(optimizer_fn, fused=True), {**section, "fused": True, "why": why}
