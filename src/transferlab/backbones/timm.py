"""Any timm image model as a backbone: hub weights online, a local file or a package offline."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv, group_parameters

from transferlab.backbones.base import Backbone, BackboneInfo, LayerGroup, Preprocessing
from transferlab.backbones.weights import WeightsFile, load_state_dict
from transferlab.errors import ConfigError, WeightsError
from transferlab.infra import hub


class TimmBackbone(Backbone):
    """A timm model with its classifier removed; `forward` returns pooled features.

    LoRA (`strategy=lora`) wraps `model` with peft (no task type: a plain `PeftModel`); its default
    targets come from `lora_target_modules()`: the attention `qkv` projections of a vision
    transformer, else every pointwise (1x1, ungrouped) convolution except the stem.

    Args:
        model_name: any timm architecture name (`timm.list_models()`).
        pretrained: load pretrained weights (else random init, e.g. as a baseline).
        weights: a local weights file (path or `WeightsFile`); `None` = the timm hub weights.
        in_chans: input channels; for 1 (grayscale) the pretrained RGB stem is summed over
            channels, the same adaptation timm applies to hub weights.
        license: licence override; by default timm's `pretrained_cfg["license"]`.
        name: display name recorded in results (defaults to `model_name`).
        model_kwargs: extra keyword arguments for `timm.create_model` (e.g. `drop_rate`).

    Shape:
        input `(B, in_chans, H, W)` -> output `(B, num_features)`.
    """

    kind = "image"  # what it takes, declared on the class: the config is checked against strategies/data before loading

    def __init__(
        self,
        model_name: str,
        pretrained: bool = True,
        weights: str | Path | WeightsFile | None = None,
        in_chans: int = 3,
        license: str | None = None,
        name: str | None = None,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if model_name.split(".")[0] not in timm.list_models():  # `arch` or `arch.pretrained_tag`
            close = timm.list_models(f"*{model_name.split('_')[0]}*")[:8]
            raise ConfigError(f"unknown timm model '{model_name}'. Similar names: {close or 'none'}.")
        kwargs = dict(num_classes=0, in_chans=in_chans, **(model_kwargs or {}))
        cfg = timm.models.get_pretrained_cfg(model_name)
        source = "random-init"
        if pretrained and weights is None:
            repo = (cfg.hf_hub_id if cfg else None) or model_name
            hub.require_hub(
                f"backbone '{name or model_name}'",
                repo,
                fix=(
                    "Offline, give a local weights file: `backbone.weights=/path/to/model.safetensors` "
                    "(or a .pth state_dict), or run with `backbone.pretrained=false` for random init."
                ),
                cached_files=("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"),
            )
            self.model = timm.create_model(model_name, pretrained=True, **kwargs)
            source = f"hub:{repo}"
        else:
            self.model = timm.create_model(model_name, pretrained=False, **kwargs)
            if pretrained:
                source = self._load_file(weights, in_chans)
        pcfg = self.model.pretrained_cfg
        # With num_classes=0 a timm model returns its pre-logits: `head_hidden_size` wide where the head has a
        # hidden layer after pooling (MobileNetV3: 576 pooled -> 1024), else `num_features`.
        self.num_features = getattr(self.model, "head_hidden_size", None) or self.model.num_features
        lic = license or getattr(weights, "license", None) or pcfg.get("license")
        self.info = BackboneInfo(name=name or model_name, source=source, license=lic, kind="image")
        size = pcfg.get("input_size", (3, 224, 224))
        mean, std = tuple(pcfg.get("mean", (0.5,) * 3)), tuple(pcfg.get("std", (0.5,) * 3))
        if in_chans == 1:  # grayscale stem: average the RGB normalisation
            mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
        self.preprocessing = Preprocessing("image", mean, std, (in_chans, size[1], size[2]), in_chans)

    def _load_file(self, weights: str | Path | WeightsFile, in_chans: int) -> str:
        wf = weights if isinstance(weights, WeightsFile) else WeightsFile(Path(str(weights)), f"file:{weights}")
        state = load_state_dict(wf.path)
        pcfg = self.model.pretrained_cfg
        for key in [k for k in state if k.startswith(f"{pcfg.get('classifier', 'head')}.")]:
            del state[key]  # the new task gets its own head
        stem = f"{pcfg.get('first_conv', '')}.weight"
        if in_chans != 3 and stem in state and state[stem].shape[1] == 3:
            state[stem] = adapt_input_conv(in_chans, state[stem])
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
        if missing or unexpected or mismatched:
            raise WeightsError(
                f"weights '{wf.path}' don't fit timm '{self.model.pretrained_cfg.get('architecture')}': "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}), {len(mismatched)} with other shapes (e.g. {mismatched[:3]}). "
                "Use weights saved from the same architecture."
            )
        self.model.load_state_dict(state)
        return wf.source

    peft_task_type = None  # peft wraps a plain nn.Module: PeftModel, forward(x) passed through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, num_features)

    @property
    def base_model(self) -> torch.nn.Module:
        """The timm model, unwrapped from peft where a PEFT strategy wrapped it."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def lora_target_modules(self) -> list[str]:
        """Default LoRA targets: ViT `qkv` linears, else the pointwise convolutions (stem excluded)."""
        from torch import nn

        model = self.base_model
        qkv = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.endswith("qkv")]
        if qkv:
            return qkv
        stem = model.pretrained_cfg.get("first_conv", "")
        return [
            n
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and tuple(m.kernel_size) == (1, 1) and n != stem
        ]

    def split(self, n_groups: int) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        """`(prefix, suffix)` with `suffix(prefix(x)) == self(x)`, cut after the first `n_groups` layer groups.

        Used by the feature cache for the frozen prefix of `partial`. Known clean cuts: timm's
        EfficientNet family (stem | blocks.i, conv_head with the last block) and ResNets (stem | layer1-4); None for
        other architectures or when `n_groups` is not a cut inside the network.
        """
        from timm.models.efficientnet import EfficientNet
        from timm.models.resnet import ResNet

        m = self.base_model
        if isinstance(m, EfficientNet):
            stem, blocks, tail = [m.conv_stem, m.bn1], list(m.blocks), [m.conv_head, m.bn2]
        elif isinstance(m, ResNet):
            stem, blocks, tail = [m.conv1, m.bn1, m.act1, m.maxpool], [m.layer1, m.layer2, m.layer3, m.layer4], []
        else:
            return None
        if len(self.layer_groups()) != 1 + len(blocks) or not 1 <= n_groups <= len(blocks):  # tail: in the last group
            return None
        return torch.nn.Sequential(*stem, *blocks[: n_groups - 1]), _Suffix(
            torch.nn.Sequential(*blocks[n_groups - 1 :], *tail), m
        )

    def layer_groups(self) -> list[LayerGroup]:
        """timm's own coarse `group_matcher` (stem, stages/blocks, final norm), input -> output."""
        model = self.base_model
        named = dict(model.named_parameters())
        groups = group_parameters(model, model.group_matcher(coarse=True))
        out = []
        for gid in sorted(groups):
            params = [(n, named[n]) for n in groups[gid]]
            parts = params[0][0].split(".")
            prefix = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
            out.append(LayerGroup(name=f"{len(out)}:{prefix}", params=params))
        return out


class _Suffix(torch.nn.Module):
    """The layers after a cut, then the model's own pooling head (`forward_head`, classifier removed)."""

    def __init__(self, layers: torch.nn.Sequential, model: torch.nn.Module) -> None:
        super().__init__()
        self.layers = layers
        object.__setattr__(self, "_model", model)  # not a submodule: its parameters belong to the backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._model.forward_head(self.layers(x))
