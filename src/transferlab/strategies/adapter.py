"""Bottleneck adapters: Houlsby (after attention and FFN) or Pfeiffer (after FFN only) placement.

peft has no bottleneck adapters, so they are injected here (see `bottleneck.py`); the frozen model
is unchanged at initialisation because every adapter starts as the identity.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from torch import nn

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.bottleneck import Adapted, BottleneckAdapter
from transferlab.strategies.peft_base import PeftStrategy

# Output projections ending the attention / FFN sub-layers, per `config.model_type`.
SUBLAYERS = {
    "bert": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "roberta": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "llama": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "mistral": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "qwen2": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    "gpt2": (r"attn\.c_proj$", r"mlp\.c_proj$"),
}
# Normalisation layers of the same architectures beyond torch's nn.LayerNorm / nn.RMSNorm (BERT, RoBERTa and
# GPT-2 use nn.LayerNorm): transformers' own classes, by `config.model_type`. Selected by type, not by name:
# GPT-2 calls its layer norms `ln_1`, `ln_2`, `ln_f`.
NORMS = {
    "bert": (),
    "roberta": (),
    "llama": ("LlamaRMSNorm",),
    "mistral": ("MistralRMSNorm",),
    "qwen2": ("Qwen2RMSNorm",),
    "gpt2": (),
}


def norm_types(model_type: str) -> tuple[type, ...]:
    """The module classes of `model_type`'s normalisation layers (`NORMS`)."""
    names = NORMS[model_type]
    if not names:
        return (nn.LayerNorm, nn.RMSNorm)
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    return (nn.LayerNorm, nn.RMSNorm, *(getattr(module, name) for name in names))


class Adapter(PeftStrategy):
    """Insert `BottleneckAdapter`s after the sub-layers; train adapters (+ optionally layer norms) and head.

    Args:
        placement: "houlsby" (after attention and FFN) or "pfeiffer" (after FFN only).
        bottleneck: adapter inner size.
        train_norms: also train the normalisation layers (LayerNorm / RMSNorm; Houlsby et al. do).
        lr, peft_lr, norm: see `PeftStrategy`.
    """

    def __init__(
        self,
        placement: str = "houlsby",
        bottleneck: int = 64,
        train_norms: bool = False,
        lr: float = 1e-3,
        peft_lr: float | None = None,
        norm: NormPolicy = "frozen",
    ) -> None:
        super().__init__(lr=lr, peft_lr=peft_lr, norm=norm)
        if placement not in ("houlsby", "pfeiffer"):
            raise ConfigError(f"strategy.placement='{placement}' must be 'houlsby' or 'pfeiffer'.")
        if bottleneck < 1:
            raise ConfigError(f"strategy.bottleneck={bottleneck} must be >= 1.")
        self.placement, self.bottleneck, self.train_norms = placement, bottleneck, train_norms

    def apply(self, backbone, head: nn.Module, classes=None):
        self.check(backbone)
        mtype = backbone.model.config.model_type
        if mtype not in SUBLAYERS:
            raise ConfigError(f"strategy=adapter knows the sub-layers of {sorted(SUBLAYERS)}, not '{mtype}'.")
        attn, ffn = SUBLAYERS[mtype]
        pattern = re.compile(ffn if self.placement == "pfeiffer" else f"{attn}|{ffn}")
        backbone.requires_grad_(False)
        targets = [n for n, _ in backbone.model.named_modules() if pattern.search(n)]
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = backbone.model.get_submodule(parent_name)
            base = getattr(parent, child)
            adapter = BottleneckAdapter(backbone.num_features, self.bottleneck).to(next(base.parameters()).device)
            setattr(parent, child, Adapted(base, adapter))
        if self.train_norms:
            norms = norm_types(mtype)
            for m in backbone.model.modules():
                if isinstance(m, norms):
                    m.requires_grad_(True)
        self.targets = targets
        head.requires_grad_(True)
        return backbone

    def save_adapter(self, backbone, head: nn.Module, out: Path) -> Path:
        """Adapter (and trained norm) weights as `adapter_model.safetensors` + `adapter_config.json`."""
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().cpu().contiguous() for n, p in backbone.model.named_parameters() if p.requires_grad}
        save_file(state, str(out / "adapter_model.safetensors"))
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(out / "head.safetensors")
        )
        cfg = {
            "type": "bottleneck",
            "placement": self.placement,
            "bottleneck": self.bottleneck,
            "train_norms": self.train_norms,
            "targets": self.targets,
        }
        (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
        return out
