"""Shared base of the parameter-efficient strategies that wrap a transformers backbone with peft.

The backbone keeps its `Backbone` interface: only its inner `model` is replaced by the
`PeftModel`, so features, tokenization and layer groups keep working. Parameter counts are taken on
the wrapped model; 4-bit weights count their logical (unpacked) size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transferlab.backbones.base import Backbone
from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.base import Strategy


def logical_numel(p: torch.Tensor) -> int:
    """Number of weights a parameter stands for (a packed 4-bit tensor holds two per byte)."""
    qs = getattr(p, "quant_state", None)
    return int(torch.Size(qs.shape).numel()) if qs is not None and getattr(qs, "shape", None) is not None else p.numel()


def count_params(module: nn.Module) -> dict:
    """`{"trainable", "total", "weight_bytes", "fp32_bytes"}` over unique parameters and buffers.

    `weight_bytes` is the storage actually held (4-bit packed data plus quantisation statistics);
    `fp32_bytes` what the same weights take in fp32.
    """
    trainable = total = nbytes = 0
    for p in module.parameters():
        n = logical_numel(p)
        total += n
        trainable += n if p.requires_grad else 0
        nbytes += p.numel() * p.element_size()
        qs = getattr(p, "quant_state", None)
        for t in (getattr(qs, "absmax", None), getattr(getattr(qs, "state2", None), "absmax", None)):
            nbytes += t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0
    nbytes += sum(b.numel() * b.element_size() for b in module.buffers())
    return {"trainable": trainable, "total": total, "weight_bytes": nbytes, "fp32_bytes": 4 * total}


class PeftStrategy(Strategy):
    """Freeze the backbone, wrap its model with a peft config, train the peft parameters and the head.

    Args:
        lr: learning rate of the head.
        peft_lr: learning rate of the peft parameters (null = `lr`); soft prompts like a larger one.
        norm: batch-norm policy (`transferlab.model.norm`); the base model is frozen, so only `adabn` changes
            anything, and only on backbones with BN layers (LoRA on a CNN).
    """

    kinds = ("text", "causal_lm")
    saves_adapter = True  # run() saves the adapter in peft's format after training
    mergeable = False  # LoRA: merged weights are re-evaluated after training

    def __init__(self, lr: float = 1e-3, peft_lr: float | None = None, norm: NormPolicy = "frozen") -> None:
        super().__init__(lr=lr, backbone_lr_mult=1.0, norm=norm)
        if peft_lr is not None and peft_lr <= 0:
            raise ConfigError(f"strategy.peft_lr={peft_lr} must be > 0 (or null to use strategy.lr).")
        self.peft_lr = peft_lr or lr

    def may_train_groups(self, backbone):
        return []  # the base model stays frozen (its BN layers too): only peft parameters and the head train

    def peft_config(self, backbone: Backbone):  # pragma: no cover - contract
        """The peft config for this backbone (task type from `backbone.peft_task_type`)."""
        raise NotImplementedError

    def check(self, backbone: Backbone) -> None:
        super().check(backbone)
        if not hasattr(backbone, "peft_task_type"):
            raise ConfigError(
                f"strategy '{self.name}' needs a transformers backbone (e.g. backbone=minilm or "
                f"backbone=smollm2), not '{backbone.info.name}'."
            )

    def prepare(self, backbone: Backbone) -> None:
        """Hook before wrapping (QLoRA prepares the 4-bit model here)."""

    def apply(self, backbone: Backbone, head: nn.Module, classes: list[str] | None = None) -> Backbone:
        from peft import get_peft_model

        self.check(backbone)
        backbone.requires_grad_(False)
        self.prepare(backbone)
        backbone.model = get_peft_model(backbone.model, self.peft_config(backbone))
        head.requires_grad_(True)
        return backbone

    def param_groups(self, backbone: Backbone, head: nn.Module) -> list[dict]:
        """Two groups: the peft parameters at `peft_lr`, the head at `lr`."""
        peft_params = [p for p in backbone.parameters() if p.requires_grad]
        groups = [{"name": "backbone.peft", "params": peft_params, "lr": self.peft_lr}]
        head_params = [p for p in head.parameters() if p.requires_grad]
        return groups + ([{"name": "head", "params": head_params, "lr": self.lr}] if head_params else [])

    def save_adapter(self, backbone: Backbone, head: nn.Module, out: Path) -> Path:
        """Save the adapter with peft's `save_pretrained` and the task head as `head.safetensors`."""
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        backbone.model.save_pretrained(str(out))
        state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        if state:
            save_file(state, str(out / "head.safetensors"))
        return out
