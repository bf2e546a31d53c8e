"""Hand a fine-tuned run to deployment: `python -m transferlab.export <run dir> --format onnx|safetensors|hf`.

The run is rebuilt from its `results.json` config and `checkpoints/last.ckpt` (LoRA merged first, peft's
`merge_and_unload`), then written as `onnx` (`model.onnx`, opset 17, dynamic batch/sequence axes; checked
against onnxruntime), `safetensors` (backbone + head, config/classes/licence in its metadata; checked by
loading it into a freshly built model) or `hf` (a `save_pretrained` folder for plain `transformers.AutoModel`
+ tokenizer, `head.safetensors`, `transferlab.json` with the pooling; checked by recomputing the logits).

Each check compares logits on held-out test inputs, relative to their scale (max |logit|, at least 1), and
predictions must agree except near-ties. `export.json` records it; exit 1 says what differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from transferlab.errors import ConfigError, TransferlabError

FORMATS = ("onnx", "safetensors", "hf")


class Classifier(nn.Module):
    """`head(backbone(x))` with plain tensor inputs: `(B, C, H, W)`, or `input_ids, attention_mask` `(B, T)`."""

    def __init__(self, backbone: nn.Module, head: nn.Module, text: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.text = backbone, head, text

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.backbone({"input_ids": x, "attention_mask": attention_mask} if self.text else x)
        return self.head(feats)  # (B, K)


def load_run(run_dir: Path, fmt: str = "safetensors", ckpt: Path | None = None):
    """(result, data, Classifier, merged) of a finished run, LoRA merged; the data has its test split built."""
    from omegaconf import OmegaConf

    from transferlab.config import rules
    from transferlab.run import build_model

    res_path = run_dir / "results.json"
    if not res_path.is_file():
        raise ConfigError(f"'{run_dir}' has no results.json: pass a run dir (e.g. outputs/2026-01-01/12-00-00).")
    result = json.loads(res_path.read_text())
    ckpt = ckpt or run_dir / "checkpoints" / "last.ckpt"
    if result.get("status") != "ok" or not ckpt.is_file():
        raise ConfigError(
            f"run '{run_dir}' is not exportable: status {result.get('status')}, checkpoint "
            f"{'found' if ckpt.is_file() else 'missing at ' + str(ckpt)}. Export a run that finished ok."
        )
    cfg = OmegaConf.create(result["config"])
    built = build_model(cfg)  # no translation stage: the model, not the translated training images
    strategy, data, module = built.strategy, built.data, built.module
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    backbone = module.backbone
    rules.check_export(fmt, strategy, backbone)
    merged = strategy.mergeable
    if merged:  # LoRA / QLoRA: deploy the merged weights (as export_peft checks)
        backbone.model = backbone.model.merge_and_unload()
    text = backbone.preprocessing.kind != "image"
    return result, data, Classifier(backbone, module.head, text).eval(), merged


def held_out(data, n: int) -> list[tuple]:
    """Up to `n` test examples as a list of input tuples (one per batch; text batches keep their own padding)."""
    batches, count = [], 0
    for batch in data.test_dataloader()[0]:
        x = batch["inputs"]
        args = (x["input_ids"], x["attention_mask"]) if isinstance(x, dict) else (x,)
        take = min(len(args[0]), n - count)
        batches.append(tuple(a[:take] for a in args))
        count += take
        if count >= n:
            break
    return batches


@torch.no_grad()
def _parity(reference, exported, batches) -> dict:
    """How the exported model's logits compare with the reference's on `batches`.

    `rel_diff` is the max abs difference over the logits' scale (max |logit|, at least 1), so the
    tolerance means the same for logits of size 1 and of size 50. `margins` keeps, for every prediction
    that differs, the reference's top-2 margin relative to that scale: `export` counts it as a real
    change (a flip) when the margin is wider than twice the tolerance, else as a near-tie.
    """
    diff, scale, n, margins = 0.0, 0.0, 0, []
    for b in batches:
        ref, out = torch.as_tensor(reference(*b)).float(), torch.as_tensor(exported(*b)).float()  # (B, K)
        top2 = ref.topk(min(2, ref.shape[1]), dim=1).values
        differ = ref.argmax(1) != out.argmax(1)
        margins += (top2[differ, 0] - top2[differ, -1]).tolist()
        diff = max(diff, float((ref - out).abs().max()))
        scale, n = max(scale, float(ref.abs().max())), n + len(ref)
    rel = [m / max(scale, 1.0) for m in margins]
    return {"max_abs_diff": diff, "logit_scale": scale, "rel_diff": diff / max(scale, 1.0),
            "predictions_differ": len(margins), "n_compared": n, "_margins": rel}  # fmt: skip


def flips(info: dict, tol: float) -> int:
    """Predictions that changed although the reference's margin was wider than twice the tolerance."""
    if "_margins" not in info:  # as written to export.json
        return int(info.get("flips", 0))
    return sum(m > 2 * tol for m in info["_margins"])


def _onnx2torch_compat() -> None:
    """onnx2torch's modules read the export opset from `torch.onnx.symbolic_helper.GLOBALS`, which moved in torch
    2.9+; point the old name at the exporter's globals so a backbone imported from ONNX exports again."""
    from torch.onnx import symbolic_helper

    if not hasattr(symbolic_helper, "GLOBALS"):
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

        symbolic_helper.GLOBALS = GLOBALS


def to_onnx(model: Classifier, batches, out: Path, opset: int) -> dict:
    import onnxruntime as ort

    if any(type(m).__module__.startswith("onnx2torch") for m in model.modules()):
        _onnx2torch_compat()

    names = ["input_ids", "attention_mask"] if model.text else ["image"]
    axes = {0: "batch", 1: "sequence"} if model.text else {0: "batch"}
    dummy = tuple(a[:2] for a in batches[0])  # batch 2: the checks below run other batch sizes
    path = out / "model.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated upstream but exact here (torch < 2.15
        warnings.simplefilter("ignore")  # pinned); the torch.export one would add onnxscript as a dependency
        torch.onnx.export(
            model,
            dummy,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**{k: axes for k in names}, "logits": {0: "batch"}},
        )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(*a):
        return sess.run(None, {k: v.numpy() for k, v in zip(names, a, strict=False)})[0]

    return {
        "files": [path.name],
        "opset": opset,
        "inputs": names,
        "dynamic_axes": {k: axes for k in names},
        **_parity(model, run, batches),
        "compared_with": "onnxruntime CPUExecutionProvider",
    }


def to_safetensors(model: Classifier, batches, out: Path, result: dict) -> dict:
    from safetensors.torch import load_file, save_file

    from transferlab.run import build_model

    path = out / "model.safetensors"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "config": json.dumps(result["config"]),
        "license": json.dumps(result.get("license")),
        "format": "transferlab Classifier(backbone, head) state_dict, LoRA merged",
    }
    save_file(state, str(path), metadata=meta)
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(result["config"])
    cfg.strategy = {"_target_": "transferlab.strategies.full.Full"}  # plain architecture: nothing peft-wrapped
    fresh = build_model(cfg).module
    reloaded = Classifier(fresh.backbone, fresh.head, model.text).eval()
    reloaded.load_state_dict(load_file(str(path)))
    return {
        "files": [path.name],
        **_parity(model, reloaded, batches),
        "compared_with": "a freshly built model loading model.safetensors",
    }


def to_hf(model: Classifier, batches, out: Path, classes: list[str]) -> dict:
    from safetensors.torch import save_file
    from transformers import AutoModel

    from transferlab.backbones.hf import pool

    bb = model.backbone  # rules.check_export: a `saves_pretrained` encoder
    bb.model.config.id2label = dict(enumerate(classes))
    bb.model.config.label2id = {c: i for i, c in enumerate(classes)}
    bb.model.save_pretrained(str(out))
    bb.tokenizer.save_pretrained(str(out))
    save_file({k: v.detach().contiguous() for k, v in model.head.state_dict().items()}, str(out / "head.safetensors"))
    (out / "transferlab.json").write_text(
        json.dumps(
            {
                "pooling": bb.pooling,
                "classes": classes,
                "head": "logits = head(pooled last_hidden_state)",
            },
            indent=2,
        )
    )
    plain = AutoModel.from_pretrained(str(out)).eval()

    def logits(ids, mask):
        h = plain(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
        return model.head(pool(h, mask, bb.pooling))

    return {
        "files": sorted(p.name for p in out.iterdir()),
        **_parity(model, logits, batches),
        "compared_with": "plain transformers.AutoModel.from_pretrained(<out>) + head.safetensors",
    }


def mismatch(info: dict, tol: float) -> str:
    """What differs when the parity check fails, in one line."""
    parts = []
    if info["rel_diff"] > tol:
        parts.append(
            f"logits differ by up to {info['max_abs_diff']:.2e} ({info['rel_diff']:.2e} of their scale "
            f"{info['logit_scale']:.3g}; tolerance {tol:g})"
        )
    if flips(info, tol):
        parts.append(f"{flips(info, tol)} of {info['n_compared']} predictions change (not near-ties)")
    return "; ".join(parts)


def export(
    run_dir: Path | str, fmt: str, out: Path | str | None = None, opset: int = 17, n: int = 100, tol: float = 1e-4
) -> dict:
    """Export a run; returns (and writes to `<out>/export.json`) what was written and the parity check."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt} is not one of {', '.join(FORMATS)}.")
    run_dir = Path(run_dir)
    result, data, model, merged = load_run(run_dir, fmt)
    out = Path(out or run_dir / "export" / fmt)
    out.mkdir(parents=True, exist_ok=True)
    batches = held_out(data, n)
    if fmt == "onnx":
        info = to_onnx(model, batches, out, opset)
    elif fmt == "safetensors":
        info = to_safetensors(model, batches, out, result)
    else:
        info = to_hf(model, batches, out, list(data.classes))
    info.update(
        format=fmt,
        out=str(out),
        n_inputs=sum(len(b[0]) for b in batches),
        tol=tol,
        flips=flips(info, tol),
        within_tol=info["rel_diff"] <= tol and flips(info, tol) == 0,
        backbone=result.get("backbone", {}).get("name"),
        license=result.get("license"),
        lora_merged=merged,
    )
    info.pop("_margins", None)
    (out / "export.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transferlab.export", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <run dir>/export/<format>)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("-n", type=int, default=100, help="held-out test inputs compared (default 100)")
    p.add_argument(
        "--tol", type=float, default=1e-4, help="max logit difference allowed, relative to max(1, max |logit|)"
    )
    a = p.parse_args(argv)
    try:
        info = export(a.run_dir, a.format, a.out, a.opset, a.n, a.tol)
    except TransferlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{a.format}: {info['out']} ({', '.join(info['files'])}); max abs diff {info['max_abs_diff']:.2e} on "
        f"{info['n_inputs']} held-out inputs vs {info['compared_with']}"
        + (f"; opset {info['opset']}" if "opset" in info else "")
        + ("" if info["within_tol"] else f"; FAILED: {mismatch(info, a.tol)}")
    )
    return 0 if info["within_tol"] else 1


if __name__ == "__main__":
    sys.exit(main())
