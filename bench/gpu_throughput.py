"""GPU mode: throughput and model-FLOPs utilisation of bf16 full fine-tuning (ViT-B/16, BERT-base).

Models are built from their architecture config with random weights (throughput doesn't depend on
the values). Training FLOPs per step are estimated as 6 x parameters x tokens (forward + backward;
ViT: 197 tokens per 224 px image). MFU = achieved FLOP/s / the device's peak dense bf16 FLOP/s.

    python bench/gpu_throughput.py --device cuda            # writes the GPU section of BENCHMARKS.md
    python bench/gpu_throughput.py --device cpu --tiny      # the same code path on a CPU (smoke run)
"""

from __future__ import annotations

import argparse
import time

from common import write_section

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0, "4090": 165.2}


def vit(device, batch, steps, tiny):
    import timm
    import torch

    name = "vit_tiny_patch16_224" if tiny else "vit_base_patch16_224"
    size = 64 if tiny else 224
    model = timm.create_model(name, pretrained=False, num_classes=10, img_size=size).to(device)
    x, y = torch.randn(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device)
    tokens = batch * ((size // 16) ** 2 + 1)
    return model, lambda: torch.nn.functional.cross_entropy(model(x), y), tokens, "images", batch


def bert(device, batch, steps, tiny):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    cfg = (
        BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=256)
        if tiny
        else BertConfig()
    )
    model = BertForSequenceClassification(cfg).to(device)
    seq = 32 if tiny else 512
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
    labels = torch.randint(0, 2, (batch,), device=device)
    return model, lambda: model(input_ids=ids, labels=labels).loss, batch * seq, "tokens", batch * seq


def measure(build, device, batch, steps, tiny, peak):
    import torch

    model, loss_fn, tokens, unit, items = build(device, batch, steps, tiny)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    dtype = torch.bfloat16
    for i in range(steps + 3):
        if i == 3:  # warm-up done
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    flops = 6 * n_params * tokens / dt
    return {
        "params": n_params,
        "per_s": items / dt,
        "unit": unit,
        "tflops": flops / 1e12,
        "mfu": flops / (peak * 1e12) if peak else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="small models and shapes (CPU smoke run)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--vit-batch", type=int, default=128)
    ap.add_argument("--bert-batch", type=int, default=32)
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s (default: by device name)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    import torch

    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    rows = []
    for label, build, batch in (("ViT-B/16", vit, args.vit_batch), ("BERT-base", bert, args.bert_batch)):
        r = measure(build, args.device, batch, args.steps, args.tiny, peak)
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
        rows.append(
            f"| {label}{' (tiny)' if args.tiny else ''} | {r['params'] / 1e6:.1f} M | {batch} | "
            f"{r['per_s']:,.0f} {r['unit']}/s | {r['tflops']:.1f} | {mfu} |"
        )
        print(rows[-1])
    if args.no_write:
        return
    body = (
        f"bf16 autocast full fine-tuning, AdamW, {args.steps} timed steps after 3 warm-up steps, on {name} "
        f"(peak {peak} TFLOP/s assumed for MFU). FLOPs = 6 x params x tokens.\n\n"
        "| model | params | batch | throughput | achieved TFLOP/s | MFU |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
    )
    write_section(f"GPU-{args.device}", f"GPU mode: throughput and MFU ({args.device})", body)


if __name__ == "__main__":
    main()
