"""P3: peak memory and trainable parameters of full fine-tuning vs LoRA vs QLoRA on SmolLM2-135M.

Each strategy runs in its own process (peak RSS is per process; `torch.cuda.max_memory_allocated`
on a GPU) on the same instruction data, batch and sequence length, for a few steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, write_section

DATA = {"smollm2": "instructions", "minilm": "reviews"}
NAMES = {"smollm2": "SmolLM2-135M-Instruct", "minilm": "all-MiniLM-L6-v2"}


def one(strategy: str, steps: int, hardware: str, backbone: str = "smollm2") -> dict:
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            f"backbone={backbone}",
            f"data={DATA[backbone]}",
            f"strategy={strategy}",
            f"hardware={hardware}",
            f"trainer.max_steps={steps}",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=0",
            "trainer.limit_test_batches=2",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "~callbacks.checkpoint",
            f"hydra.run.dir={d}",
        ]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        res = json.loads((Path(d) / "results.json").read_text()) if (Path(d) / "results.json").exists() else {}
        if res.get("status") != "ok":
            raise SystemExit(f"{strategy} failed:\n{out.stderr[-3000:]}")
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--backbone", default="smollm2", choices=sorted(DATA))
    args = ap.parse_args()
    hw = "cpu" if args.device == "cpu" else "gpu_bf16"
    rows, base = [], None
    for strategy in ("full", "lora", "qlora"):
        r = one(strategy, args.steps, hw, args.backbone)
        mem, p = r["peak_mem_mb"], r["params"]
        pred = (r.get("plan") or {}).get("predicted_peak_mem_mb")
        base = base or mem
        planned = f"{pred:,.0f} | {pred / mem:.2f}" if pred else "- | -"
        rows.append(
            f"| {strategy} | {p['trainable']:,} | {100 * p['trainable'] / p['total']:.2f} % | "
            f"{mem:,.0f} | {mem / base:.2f} "
            f"| {planned} |"
        )
    what = "peak RSS" if args.device == "cpu" else "max CUDA memory allocated"
    body = (
        f"{NAMES[args.backbone]} on `data={DATA[args.backbone]}`, {args.steps} optimizer steps, same "
        "batch/sequence length; "
        f"{what} of the whole process (weights, activations, optimizer, and the Python/torch runtime).\n\n"
        f"The planner's prediction for the same run (`results.json` -> `plan.predicted_peak_mem_mb`, meta device, "
        f"nothing loaded) is shown next to it (goal: within ±30 %).\n\n"
        f"| strategy | trainable params | share | {what} (MB) | vs full | planner predicted (MB) | "
        "predicted / measured |\n"
        f"|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    tag = "" if args.backbone == "smollm2" else f"-{args.backbone}"
    write_section(
        f"P3-{args.device}{tag}", f"P3: memory of full vs LoRA vs QLoRA ({NAMES[args.backbone]}, {args.device})", body
    )


if __name__ == "__main__":
    main()
