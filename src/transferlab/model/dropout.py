"""Which parts of a partly frozen backbone run in training mode: dropout (and attention dropout, stochastic
depth) in the parts that train, evaluation mode in the frozen part the forward passes first.

Before 2026-12-07 a backbone sub-module was put in eval mode when none of its own parameters trained
(`frozen_subtrees`). Dropout has no parameters, so whether a dropout layer stayed on depended on how the
model happened to nest it: on all-MiniLM-L6-v2, 19 of 19 layers were on under full fine-tuning, 6 under
LoRA on query/value (only the attention dropout beside the adapted projections), 12 under bottleneck
adapters and 0 under prompt and prefix tuning, whose trainable prompts sit outside the encoder.

`backbone_dropout` (results.json `dropout`) makes it one rule:
- `after_trainable` (default): a module is in eval mode when everything in it runs, in the forward, before
  the first trainable parameter (the frozen prefix: its outputs are fixed, so the feature cache can keep
  them); everything after it is in training mode, frozen or not, as in the published recipes (LoRA,
  prompt and prefix tuning train with the base model's dropout on). Frozen batch-norm layers keep their
  pretrained statistics either way; `strategy.norm` decides the trainable ones.
- `all`: every module in training mode but frozen batch norm (`model.train()`, Hugging Face's Trainer):
  frozen prefixes too, so their features are not fixed and the feature cache declines.
- `frozen_subtrees`: the rule before 2026-12-07 (reproduces the committed studies).

The forward order comes from one traced forward of two training examples at build time (hooks record
when each module is first called); a backbone that can't be traced falls back to registration order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferlab.config.ranges import BACKBONE_DROPOUT as POLICIES  # torch-free: validation checks them early
from transferlab.errors import ConfigError

log = logging.getLogger("transferlab")


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ConfigError(
            f"backbone_dropout={policy!r} is not a policy; choose one of {', '.join(POLICIES)} "
            "(after_trainable: training mode after the first trainable parameter, the default)."
        )
    return policy


@dataclass
class DropoutPolicy:
    """The policy and the backbone's forward order: module name -> index (in calls) of its first call, and of
    its latest (`latest`; default: the first), for a module the forward calls more than once."""

    policy: str = "after_trainable"
    order: dict[str, int] = field(default_factory=dict)
    traced: bool = False
    latest: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(init=False, repr=False)  # sub-tree name -> the latest call in it

    def __post_init__(self) -> None:
        self.last = {}
        for name, i in {**self.order, **self.latest}.items():  # every ancestor ("" is the backbone) runs then too
            parts = name.split(".") if name else []
            for k in range(len(parts) + 1):
                a = ".".join(parts[:k])
                self.last[a] = max(self.last.get(a, -1), i)

    def apply(self, backbone: nn.Module) -> None:
        """Set the modes of a backbone that `.train()` just put in training mode."""
        if self.policy == "frozen_subtrees":
            from transferlab.backbones.base import set_frozen_eval

            set_frozen_eval(backbone)
            return
        for m in backbone.modules():  # frozen BN keeps its pretrained statistics under every policy
            params = list(m.parameters())  # (BN without affine parameters is not frozen: it has none)
            if isinstance(m, _BatchNorm) and params and not any(p.requires_grad for p in params):
                m.eval()
        if self.policy == "after_trainable":
            first = first_trainable(backbone, self.order)
            _prefix_eval(backbone, "", self.last, first)

    def describe(self, backbone: nn.Module) -> dict:
        """results.json `dropout`: the policy and the dropout layers in training mode after `.train()`."""
        layers = [m for m in backbone.modules() if is_dropout(m)]
        return {
            "policy": self.policy,
            "order": None if self.policy != "after_trainable" else "traced" if self.traced else "registration",
            "layers": len(layers),
            "active": sum(m.training for m in layers),
        }


def is_dropout(m: nn.Module) -> bool:
    """Dropout layers and timm's stochastic depth (DropPath), whatever their rate."""
    return isinstance(m, nn.modules.dropout._DropoutNd) or type(m).__name__ == "DropPath"


def _is_adapter_layer(m: nn.Module) -> bool:
    """A peft tuner layer (LoRA's `Linear`, ...): its adapter's own dropout runs before its trainable weights."""
    return any(c.__name__ == "BaseTunerLayer" for c in type(m).__mro__)


def first_trainable(backbone: nn.Module, order: dict[str, int]) -> float:
    """Forward index of the first module holding a trainable parameter of its own (inf: none trains). A peft
    tuner layer counts as one module, from its own call: LoRA's dropout (`strategy.dropout`), which its
    forward applies before `lora_A`, belongs to the adapter, not to the frozen prefix."""
    units = [name for name, m in backbone.named_modules() if _is_adapter_layer(m)]
    idx = []
    for name, m in backbone.named_modules():
        if any(p.requires_grad for p in m.parameters(recurse=False)):
            unit = [u for u in units if name.startswith(f"{u}.")]
            idx.append(order.get(canonical(min(unit, key=len) if unit else name), float("inf")))
    return min(idx, default=float("inf"))


def _prefix_eval(module: nn.Module, name: str, last: dict[str, int], first: float) -> None:
    """Eval mode for each largest sub-tree that runs wholly before `first` and trains nothing. A sub-tree the
    trace never called keeps its parent's mode (BERT's SDPA attention reads its `training` flag, not its
    unused `dropout` module); one that neither ran nor trains where nothing trains is in eval mode."""
    key, trains = canonical(name), any(p.requires_grad for p in module.parameters())
    if key not in last:
        if first == float("inf") and not trains:
            module.eval()
        return
    if last[key] < first and not trains:
        module.eval()
        return
    for child_name, child in module.named_children():
        _prefix_eval(child, f"{name}.{child_name}" if name else child_name, last, first)


WRAPPERS = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod")  # FSDP, activation checkpointing,
# torch.compile: wrappers a distributed or compiled run puts around modules after the build-time trace


def canonical(name: str) -> str:
    """A module's name without the wrapper segments added after tracing (the traced name)."""
    return ".".join(p for p in name.split(".") if p not in WRAPPERS) if name else name


def registration_order(backbone: nn.Module) -> dict[str, int]:
    return {name: i for i, (name, _) in enumerate(backbone.named_modules())}


def trace_order(backbone: nn.Module, inputs: Any, forward: Callable[[Any], Any] | None = None) -> dict[str, int]:
    """Module name -> index of its first call in one forward of `inputs` (`trace_calls`)."""
    return trace_calls(backbone, inputs, forward)[0]


def trace_calls(
    backbone: nn.Module, inputs: Any, forward: Callable[[Any], Any] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """(first, latest): module name -> index, among all module calls, of its first and of its latest call in one
    forward of `inputs` (`forward(inputs)`, default `backbone(inputs)`), in eval mode, without gradients, on a
    forked random stream. A module called twice (a dropout used before and after a block) has both."""
    order: dict[str, int] = {}
    latest: dict[str, int] = {}
    names = {id(m): canonical(n) for n, m in backbone.named_modules()}
    calls = iter(range(1 << 62))

    def hook(m, _args):
        n = names.get(id(m))
        if n is not None:
            latest[n] = i = next(calls)
            order.setdefault(n, i)

    handles = [m.register_forward_pre_hook(hook) for m in backbone.modules()]
    was = backbone.training
    try:
        backbone.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            (forward or backbone)(inputs)
    finally:
        for h in handles:
            h.remove()
        backbone.train(was)
    return order, latest


def example_batch(data, device: torch.device, n: int = 2) -> dict:
    """The first `n` training examples collated as in training, on `device`."""
    from lightning.fabric.utilities.apply_func import move_data_to_device
    from torch.utils.data import default_collate

    ds = data.datasets["source/train"]
    batch = (data.collate_fn or default_collate)([ds[i] for i in range(min(n, len(ds)))])
    return move_data_to_device(batch, device)


def build_policy(
    policy: str, backbone: nn.Module, data, forward: Callable[[nn.Module, dict], Any] | None = None
) -> DropoutPolicy:
    """The policy with the backbone's traced forward order (registration order if the trace fails).
    `forward(backbone, batch)` runs one training batch (default: `backbone(batch["inputs"])`)."""
    check_policy(policy)
    if policy != "after_trainable":  # the only policy that reads the order
        return DropoutPolicy(policy)
    run = forward or (lambda bb, batch: bb(batch["inputs"]))
    try:
        batch = example_batch(data, next(backbone.parameters()).device)
        first, latest = trace_calls(backbone, batch, lambda b: run(backbone, b))
        return DropoutPolicy(policy, first, True, latest)
    except Exception as e:  # a backbone that can't run two examples here: its modules' registration order
        log.warning("backbone_dropout: tracing the forward order failed (%s); using registration order", e)
        return DropoutPolicy(policy, registration_order(backbone), False)
