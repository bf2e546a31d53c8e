"""A TensorFlow Hub model or a local SavedModel as a trainable PyTorch backbone (needs the `tfhub` extra).

SavedModel -> ONNX (tf2onnx, in a subprocess: TensorFlow never loads into the training process) ->
PyTorch (`OnnxBackbone`, onnx2torch). The ONNX file is cached by the SavedModel's content and the
signature, so the conversion (~10-20 s, mostly TensorFlow's import) runs once.

What is lost on the way: tf2onnx freezes the graph for inference, so Keras batch norm becomes a
fixed scale-and-shift (no running statistics to adapt) and dropout is removed; Dense kernels become
MatMul constants, which `OnnxBackbone` turns back into trainable parameters. Ops tf2onnx or
onnx2torch can't map stop the conversion with their names.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlparse

from transferlab.backbones.onnx_file import OnnxBackbone
from transferlab.errors import ConfigError, WeightsError
from transferlab.infra import hub, licence
from transferlab.infra.paths import atomic_write, cache_dir


def _download(handle: str, name: str) -> Path:
    """A TF Hub handle (URL) -> the unpacked SavedModel in the cache (`?tf-hub-format=compressed`)."""
    key = hashlib.sha256(handle.encode()).hexdigest()[:16]
    out = cache_dir("tfhub") / key
    if (out / "saved_model.pb").is_file():
        return out
    host = urlparse(handle).hostname or ""
    if hub.offline_forced() or not hub.reachable(host):
        raise WeightsError(
            f"backbone '{name}' needs the TF Hub model '{handle}' but {host} is unreachable (offline?). "
            "Download and unpack it elsewhere and set backbone.path=/path/to/saved_model (a folder with "
            "saved_model.pb)."
        )
    import torch

    archive = out.with_suffix(".tar.gz")
    torch.hub.download_url_to_file(f"{handle}?tf-hub-format=compressed", str(archive), progress=False)
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    archive.unlink()
    return out


def _fingerprint(folder: Path, signature: str, opset: int) -> str:
    h = hashlib.sha256(f"{signature}:{opset}".encode())
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:20]


def convert(saved_model: Path, signature: str = "serving_default", opset: int = 17) -> tuple[Path, dict]:
    """SavedModel -> cached ONNX file; (its path, the conversion summary)."""
    out = cache_dir("tfhub-onnx") / f"{_fingerprint(saved_model, signature, opset)}.onnx"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists():
        return out, json.loads(meta.read_text())
    tmp = out.with_name(f".{out.name}.tmp")
    cmd = [
        sys.executable,
        "-m",
        "transferlab.backbones.tf_convert",
        str(saved_model),
        str(tmp),
        "--signature",
        signature,
        "--opset",
        str(opset),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    if proc.returncode == 3:
        raise ConfigError(f"SavedModel '{saved_model}': {summary.get('error')}")
    if proc.returncode != 0:
        if "No module named 'tensorflow'" in proc.stderr or "No module named 'tf2onnx'" in proc.stderr:
            raise ConfigError("TF Hub / SavedModel backbones need the tfhub extra: pip install 'transferlab[tfhub]'.")
        detail = summary.get("unsupported") or summary.get("log") or proc.stderr[-2000:]
        raise WeightsError(
            f"converting SavedModel '{saved_model}' to ONNX failed ({summary.get('error', 'crashed')}): {detail}"
        )
    tmp.replace(out)
    atomic_write(meta, lambda t: t.write_text(json.dumps(summary)))
    return out, summary


def tfhub_backbone(
    handle: str | None = None,
    path: str | None = None,
    signature: str = "serving_default",
    opset: int = 17,
    name: str | None = None,
    license: str | None = None,
    **onnx_kwargs,
) -> OnnxBackbone:
    """Build an `OnnxBackbone` from a TF Hub handle or a local SavedModel folder.

    Args:
        handle: a TF Hub model URL (downloaded once into the cache; needs a network).
        path: a local SavedModel folder (offline); wins over `handle`.
        signature: the serving signature to convert (its single input must be a float image).
        opset: ONNX opset of the intermediate file.
        name: display name; default the folder / handle's last part.
        license: licence of the weights; null = a LICENSE file in the SavedModel folder, else unknown.
        **onnx_kwargs: passed to `OnnxBackbone` (output, mean, std, input_size, num_groups ...).
    """
    if path is None and handle is None:
        raise ConfigError(
            "a TF Hub backbone needs backbone.handle (a TF Hub URL) or backbone.path (a SavedModel folder)."
        )
    if (
        name is None and path is None
    ):  # .../imagenet/mobilenet_v2_100_224/feature_vector/5 -> mobilenet_v2_100_224/feature_vector
        name = "/".join([part for part in urlparse(handle).path.split("/") if part and not part.isdigit()][-2:])
    name = name or Path(str(path)).name
    folder = Path(path) if path else _download(handle, name)  # offline + handle: fails here, before TensorFlow
    if not (folder / "saved_model.pb").is_file():
        raise WeightsError(f"backbone.path='{folder}' is not a SavedModel folder (no saved_model.pb).")
    onnx_file, summary = convert(folder, signature, opset)
    lic, lsrc = license, None
    if lic is None and (found := licence.from_folder(folder)):
        lic, lsrc = found, "LICENSE file in the SavedModel folder"
    bb = OnnxBackbone(
        path=str(onnx_file),
        name=name,
        license=lic,
        license_source=lsrc,
        source=f"hub:{handle}" if not path else f"file:{path}",
        **onnx_kwargs,
    )
    bb.info.extra.update(tf_signature=signature, tf_inputs=summary.get("inputs"), converted_via="tf2onnx -> onnx2torch")
    return bb
