"""P10: glibc's allocator and large activations on a CPU (what `MALLOC_MMAP_MAX_=0` buys at 224 px).

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh `mmap` and gives it back
on `free`, so a network whose activations are tens of MB (EfficientNet-Lite0 at 224 px: 4.8 MB per image in
its widest layer, 150 MB at batch 32) page-faults its activations in again on every forward and backward.
With `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>` in the environment, glibc keeps freed memory in its
heap and reuses it. The setting must be in place when the process starts, so each measurement is a child
process: full fine-tuning steps (batch 32) and eval passes (batch 64, the default `eval_batch_size`) of
EfficientNet-Lite0 (channels_last, as `memory_format=auto` lays it out), one torch thread, at 224 and 64 px;
both environments interleaved, medians of the repeats. Peak RSS and minor page faults come from `getrusage`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import write_section

NO_MMAP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30)}


def child(px: int, mode: str) -> dict:
    import resource
    import time

    import timm
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)
    model = model.to(memory_format=torch.channels_last)
    times = []
    if mode == "train":
        x = torch.randn(32, 3, px, px).to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (32,))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()
        steps = 6 if px > 100 else 12
    else:
        x = torch.randn(128 if px > 100 else 512, 3, px, px).to(memory_format=torch.channels_last)
        model.eval()
        steps = 4
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        t = time.perf_counter()
        if mode == "train":
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode():
                for i in range(0, len(x), 64):
                    model(x[i : i + 64])
        times.append((time.perf_counter() - t) / (1 if mode == "train" else len(x)))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "ms": 1000 * statistics.median(times[2:]),
        "faults": (ru.ru_minflt - f0) / steps,
        "peak_mb": ru.ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("PX", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return
    cases = [(224, "train"), (224, "eval"), (64, "train"), (64, "eval")]
    envs = {"glibc default": {}, "MALLOC_MMAP_MAX_=0": NO_MMAP}
    out: dict[tuple, list[dict]] = {}
    for _ in range(args.repeats):
        for px, mode in cases:
            for name, extra in envs.items():
                env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(px), mode], capture_output=True, text=True, env=env,
                    check=True,
                )  # fmt: skip
                out.setdefault((px, mode, name), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = ["| case | allocator | ms (median) | minor page faults per step/pass | peak RSS MB |"]
    rows.append("|---|---|---|---|---|")
    speedups = []
    for px, mode in cases:
        med = {}
        for name in envs:
            runs = out[(px, mode, name)]
            med[name] = statistics.median(r["ms"] for r in runs)
            unit = "per step" if mode == "train" else "per image"
            rows.append(
                f"| {mode} {px} px | {name} | {med[name]:.1f} {unit} | "
                f"{statistics.median(r['faults'] for r in runs):,.0f} | {max(r['peak_mb'] for r in runs):,.0f} |"
            )
        speedups.append(f"{mode} at {px} px {med['glibc default'] / med['MALLOC_MMAP_MAX_=0']:.2f}x")
    body = (
        "Full fine-tuning steps (batch 32) and eval passes (batch 64) of EfficientNet-Lite0 (channels_last), one "
        f"torch thread, each in a fresh process; {args.repeats} interleaved repeats.\n\n"
        + "\n".join(rows)
        + f"\n\n**P10: with `{' '.join(f'{k}={v}' for k, v in NO_MMAP.items())}`: "
        + "; ".join(speedups)
        + ".** transferlab does not set it: it is the whole process's allocator, it must be in the environment "
        "before Python starts, and it keeps freed memory (see the peak RSS column); export it for long CPU runs at "
        "large image sizes."
    )
    write_section("P10", "P10: glibc's allocator and large activations on a CPU", body)


if __name__ == "__main__":
    main()
