"""Build a configured backbone on the meta device from its architecture config (no weights read).

Architecture configs (config.json-level numbers) ship in `transferlab/archs/<name>.json` for the hub
backbones, so planning a 65B model works offline; a local model folder with a `config.json` works too.
timm backbones are built by timm itself under `torch.device("meta")`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from transferlab.backbones.base import BackboneInfo
from transferlab.errors import ConfigError


def known_archs() -> list[str]:
    """Names of the architecture configs shipped with transferlab."""
    return sorted(p.name[:-5] for p in resources.files("transferlab.archs").iterdir() if p.name.endswith(".json"))


def load_arch(name_or_dir: str) -> dict:
    """The config.json dict of a shipped architecture (`llama65b`) or of a local model folder."""
    path = Path(str(name_or_dir))
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text())
    shipped = resources.files("transferlab.archs") / f"{name_or_dir}.json"
    if shipped.is_file():
        return json.loads(shipped.read_text())
    raise ConfigError(
        f"unknown architecture '{name_or_dir}': not a shipped architecture ({', '.join(known_archs())}) and not a "
        "folder with a config.json. Plan it with `plan.arch=<name or folder>` or `backbone.path=<folder>`."
    )


def arch_source(node: DictConfig, arch: str | None) -> str:
    """Where the architecture of backbone config `node` comes from: `plan.arch`, a local path, or its name."""
    if arch:
        return arch
    path = node.get("path")
    if isinstance(path, str) and (Path(path) / "config.json").is_file():
        return path
    return str(node.get("name") or node.get("model_name"))


class MetaMixin:
    """An HF backbone whose `model` is built on the meta device; 4-bit loading is recorded, not done.

    `quantized` holds the ids of the weights a bitsandbytes 4-bit load would replace (every
    `nn.Linear` except the ones transformers keeps in full precision: output embeddings, tied weights).
    """

    def __init__(
        self,
        arch: dict,
        name: str,
        dtype: str = "float32",
        quantization: dict | None = None,
        max_length: int = 128,
        pooling: str = "mean",
        license: str | None = None,
        source: str = "",
    ) -> None:
        torch.nn.Module.__init__(self)
        import transformers

        from transferlab.backbones.hf import TextPreprocessing

        transformers.utils.logging.set_verbosity_error()
        fields = {k: v for k, v in arch.items() if not k.startswith("_") and k not in ("library", "model_name")}
        if "model_type" not in fields:
            raise ConfigError(f"architecture of '{name}' has no model_type: not a transformers config.json.")
        try:
            config = transformers.AutoConfig.for_model(**fields)
        except (ValueError, KeyError) as e:
            raise ConfigError(
                f"architecture of '{name}': transformers can't build model_type '{fields['model_type']}' ({e})."
            ) from e
        self.dtype, self.location, self.max_length, self.pooling = dtype, source, max_length, pooling
        self.template, self.tokenizer, self.quantized = "{text}", None, set()
        with torch.device("meta"):
            self.model = getattr(transformers, self.auto_class).from_config(config, dtype=getattr(torch, dtype))
        self.num_features = config.hidden_size
        self.info = BackboneInfo(
            name=name,
            source=f"meta:{source}",
            license=license,
            kind=self.kind,
            extra={"model_type": config.model_type, "dtype": dtype},
        )
        self.preprocessing = TextPreprocessing(max_length=max_length)
        if quantization:
            self.load(quantization)

    def load(self, quantization: dict | None = None) -> None:
        """Record the 4-bit layout transformers would load (`replace_with_bnb_linear`'s choice of layers)."""
        from transformers.quantizers.base import get_keys_to_not_convert

        self.quantized = set()
        if not quantization:
            return
        keep = get_keys_to_not_convert(self.model)
        for n, m in self.model.named_modules():
            if type(m) is torch.nn.Linear and not any(n == k or n.endswith("." + k) for k in keep):
                self.quantized.add(id(m.weight))
        self.quantization = dict(quantization)
        self.info.extra["quantization"] = self.quantization

    def is_quantized(self) -> bool:
        return bool(self.quantized)


def build_meta_backbone(node: DictConfig, arch: str | None = None):
    """The backbone of config `node` on the meta device, with the same class and layer groups as training."""
    from hydra.utils import get_class

    target = node.get("_target_", "")
    cls = get_class(target)
    if target.endswith("TimmBackbone"):
        from transferlab.config.instantiate import build

        with torch.device("meta"):
            bb = build(node, pretrained=False, weights=None)
        bb.quantized = set()
        return bb
    if not hasattr(cls, "auto_class"):
        raise ConfigError(f"plan can build transformers and timm backbones, not '{target}'.")
    source = arch_source(node, arch)
    meta_cls = type(f"Meta{cls.__name__}", (MetaMixin, cls), {})
    quant = node.get("quantization")
    quant = OmegaConf.to_container(quant, resolve=True) if isinstance(quant, DictConfig) else quant
    return meta_cls(
        load_arch(source),
        name=str(node.get("name") or source),
        dtype=node.get("dtype", "float32"),
        quantization=quant,
        max_length=node.get("max_length", 128),
        pooling=node.get("pooling", "mean"),
        license=node.get("license"),
        source=source,
    )
