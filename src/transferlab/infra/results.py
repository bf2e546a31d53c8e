"""The run result: `results.json` in the run dir, and the summary table printed at the end."""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from pathlib import Path

from transferlab.infra.paths import atomic_write


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0


def peak_memory_mb() -> float:
    """Peak memory of this process: GPU allocator peak when CUDA was used, else peak RSS."""
    torch = sys.modules.get("torch")  # not imported for it: a config error is answered before torch loads
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def clean_metrics(metrics: dict) -> dict:
    """Tensors -> floats, sorted by name."""
    out = {}
    for k, v in sorted(metrics.items()):
        v = float(v.item() if hasattr(v, "item") else v)
        out[k] = None if math.isnan(v) else v
    return out


def write(result: dict, out_dir: Path, name: str = "results.json") -> Path:
    """results.json (or `name`), atomically, with secrets (tokens, API keys) masked."""
    from transferlab.infra.redact import scrub

    path = Path(out_dir) / name
    clean = scrub(json.loads(json.dumps(result, default=str)))
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(clean, indent=2)))
    return path


def _norm_text(norm: dict | None) -> str:
    if not norm:
        return "n/a"
    text = f"{norm['policy']} ({norm['bn_layers']} BN layers, {norm['trainable_bn_layers']} trainable)"
    adabn = norm.get("adabn")
    if adabn:
        text += f"; AdaBN re-estimated {adabn['layers']} on {adabn['samples']} {adabn['domain']} images"
    return text


def summary(result: dict) -> str:
    """A short table for the terminal."""
    rows = [("status", result["status"] + (f" ({result['error']})" if result.get("error") else ""))]
    if result.get("note"):
        rows.append(("note", result["note"]))
    bb = result.get("backbone") or {}
    lic = result.get("license") or {}
    rows += [
        (
            "backbone",
            f"{bb.get('name')} [{bb.get('source')}, licence {bb.get('license')}"
            + (f" from {lic['source']}]" if lic.get("source") else "]"),
        ),
        ("strategy", str(result.get("strategy"))),
        ("seed", str(result.get("seed"))),
        ("norm", _norm_text(result.get("norm"))),
        ("train size", str(result.get("train_size"))),
    ]
    drop = result.get("dropout") or {}
    if drop.get("layers"):  # a backbone with dropout: how many of its layers trained in training mode
        rows.insert(-1, ("dropout", f"{drop['policy']} ({drop['active']} of {drop['layers']} layers in training mode)"))
    p = result.get("params") or {}
    if p:
        rows.append(
            (
                "params",
                f"{p['trainable']:,} trainable / {p['total']:,} total "
                f"({100 * p['trainable'] / max(p['total'], 1):.2f} %)",
            )
        )
    for k, v in (result.get("metrics") or {}).items():
        if k.startswith(("test/", "val/")) and k.endswith("acc"):
            rows.append((k, "n/a" if v is None else f"{v:.4f}"))
    rows += [("time", f"{result.get('time_s', 0):.1f} s"), ("peak memory", f"{result.get('peak_mem_mb', 0):.0f} MB")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
