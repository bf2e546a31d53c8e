"""The plan as a terminal table, and why a plan fits no listed GPU."""

from __future__ import annotations

from transferlab.planning import memory

GPUS_GB = (24, 40, 48, 80, 141)
GPU_RUNTIME = 1.0e9  # CUDA context, cuBLAS/cuDNN workspaces: ~1 GB on a current GPU


def why_not(p: dict) -> str:
    """Why a plan fits no listed GPU, and what to change."""
    parts = {
        "weights": sum(p["weights"].values()),
        "gradients": p["gradients"],
        "optimizer states": p["optimizer_states"],
        "activations": p["activations"]["checkpointed" if p["checkpointing"] else "total"],
    }
    big = max(parts, key=parts.get)
    fixes = {
        "activations": f"lower data.batch_size (now {p['batch_size']}) or the sequence length / image size"
        + ("" if p["checkpointing"] else ", or use activation checkpointing (strategy.gradient_checkpointing=true)"),
        "weights": "use strategy=qlora (4-bit weights) or a smaller backbone",
        "gradients": "train fewer parameters (strategy=lora / qlora / partial)",
        "optimizer states": "train fewer parameters (strategy=lora / qlora) or an 8-bit optimizer "
        "(optimizer._target_=bitsandbytes.optim.AdamW8bit)",
    }
    return (
        f"needs {p['total'] / 1e9:.1f} GB, more than the largest listed GPU ({GPUS_GB[-1]} GB); the largest part "
        f"is {big} ({parts[big] / 1e9:.1f} GB): {fixes[big]}."
    )


def render(p: dict) -> str:
    """The plan as a table."""
    gb = lambda b: f"{b / 1e9:,.2f} GB"
    w = ", ".join(f"{k} {gb(v)}" for k, v in sorted(p["weights"].items(), key=lambda kv: -kv[1]))
    a, acts, n = p["act_bytes"], p["activations"], p["params"]
    rows = [
        ("run", f"{p['backbone']} ({p['model_type']}) x {p['strategy']}, {p['input']}"),
        (
            "parameters",
            f"{n['total']:,} total, {n['trainable']:,} trainable ({100 * n['trainable'] / max(n['total'], 1):.3f} %)",
        ),
        (
            "weights",
            f"{gb(sum(p['weights'].values()))}  ({w}"
            + (
                f"; 4bit = {memory.bits_per_4bit_weight():.3f} bits/weight incl. constants)"
                if "4bit" in p["weights"]
                else ")"
            ),
        ),
        ("gradients", f"{gb(p['gradients'])}  (trainable parameters, in their dtype)"),
        ("optimizer", f"{gb(p['optimizer_states'])}  ({p['optimizer']}: state per trainable parameter)"),
        (
            "activations",
            f"{gb(acts['total'])}  (traced saved tensors at {a} bytes, {acts['blocks']} blocks)"
            + (f"; Korthikanti L*s*b*h*(34+5as/h): {gb(p['formula'])}" if p.get("formula") else ""),
        ),
        (
            "  checkpointed",
            f"{gb(acts['checkpointed'])}  (block inputs {gb(acts['block_inputs'])} + one block "
            f"{gb(acts['max_block'])} + rest){'  <- configured' if p['checkpointing'] else ''}",
        ),
        ("runtime", f"{gb(GPU_RUNTIME)}  (CUDA context and workspaces)"),
        ("total", gb(p["total"])),
        ("fits on", ", ".join(f"{g} GB" for g in p["fits"]) or "no listed GPU"),
    ]
    rows += [("note", n) for n in p["notes"]]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
