"""File checks before anything loads: weights files and local transformers model folders."""

from __future__ import annotations

import json
from pathlib import Path

from transferlab.config.schema import target_class
from transferlab.errors import ConfigError, WeightsError

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def check_backbone_files(tree: dict) -> None:
    node = tree.get("backbone") or {}
    cls = target_class(node)
    weights = node.get("weights")
    if isinstance(weights, str) and node.get("pretrained", True) and not Path(weights).expanduser().is_file():
        raise WeightsError(f"weights file not found: '{weights}'. Point `backbone.weights` at an existing file.")
    from transferlab.backbones.hf import HFBackbone

    path = node.get("path")
    if cls is not None and issubclass(cls, HFBackbone) and isinstance(path, str):
        check_model_folder(Path(path).expanduser(), bool(node.get("trust_remote_code", False)))


def check_model_folder(path: Path, trust_remote_code: bool = False) -> None:
    """A transformers model folder (`save_pretrained` layout): name the first missing file."""
    fix = (
        "Point backbone.path at a folder saved with `save_pretrained` "
        "(config.json + model.safetensors + tokenizer files)."
    )
    if not path.is_dir():
        raise WeightsError(f"backbone.path='{path}' does not exist or is not a folder. {fix}")
    if not (path / "config.json").is_file():
        raise WeightsError(f"backbone.path='{path}' is not a transformers model folder (no config.json). {fix}")
    weights = [f for f in _WEIGHT_FILES if (path / f).is_file()]
    if not weights:
        raise WeightsError(
            f"backbone.path='{path}' has no weights file: expected model.safetensors (or "
            f"pytorch_model.bin, or a sharded *.index.json with its shards). {fix}"
        )
    if weights[0].endswith(".index.json"):
        shards = sorted(set(json.loads((path / weights[0]).read_text()).get("weight_map", {}).values()))
        lost = [s for s in shards if not (path / s).is_file()]
        if lost:
            raise WeightsError(
                f"backbone.path='{path}': {weights[0]} lists {len(shards)} shard(s) but {lost[0]} is missing"
                f"{f' (and {len(lost) - 1} more)' if len(lost) > 1 else ''}; copy the complete folder."
            )
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise WeightsError(
            f"backbone.path='{path}' has no tokenizer files (tokenizer.json, vocab.txt or "
            "tokenizer.model); save the tokenizer into the folder too (`tokenizer.save_pretrained`)."
        )
    if (
        (path / "vocab.json").is_file()
        and not (path / "tokenizer.json").is_file()
        and not (path / "merges.txt").is_file()
    ):
        raise WeightsError(f"backbone.path='{path}' has vocab.json but no merges.txt (a BPE tokenizer needs both).")
    auto_map = json.loads((path / "config.json").read_text()).get("auto_map")
    if auto_map and not trust_remote_code:
        raise ConfigError(
            f"backbone.path='{path}' needs custom model code (config.json auto_map: "
            f"{sorted(auto_map)}), which transformers "
            "would execute. transferlab runs no code from model folders unless you set "
            "backbone.trust_remote_code=true; "
            "do that only if you trust the code in that folder."
        )


def check_logger_dirs(tree: dict) -> None:
    """Every logger's `save_dir` can be written (created if missing), before anything loads or trains."""
    import tempfile

    for name, node in (tree.get("logger") or {}).items():
        where = node.get("save_dir") if isinstance(node, dict) else None
        if not isinstance(where, str) or not where:
            continue
        try:
            Path(where).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=where):
                pass
        except OSError as e:
            raise ConfigError(
                f"logger.{name}.save_dir='{where}' can't be written ({type(e).__name__}: {e.strerror or e}). "
                f"Point it at a writable folder (e.g. leave it at the run dir), or drop that logger (logger=csv/none)."
            ) from None
