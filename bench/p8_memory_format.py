"""P8: channels_last vs contiguous (PyTorch's default) layout for convolutional backbones on this machine.

The measurement behind `memory_format=auto` (transferlab/model/memory_format.py). Two parts, each arm interleaved
with the other in every repeat:
1. per step, outside the framework: a training step (forward, backward, AdamW; BN frozen as `norm=frozen`)
   and an eval forward, for timm models with depthwise convolutions (EfficientNet-Lite0, ConvNeXt-T) and
   without (ResNet-18, ResNet-50);
2. end to end: `python train.py strategy=full` on the default task with `memory_format=auto` (channels_last
   here) vs `memory_format=contiguous`: fit time and test accuracy.

    python bench/p8_memory_format.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_section

MODELS = [  # (timm name, image size, batch): the default backbone at the sizes the studies use, then others
    ("tf_efficientnet_lite0", 32, 32),
    ("tf_efficientnet_lite0", 64, 32),
    ("tf_efficientnet_lite0", 224, 16),
    ("convnext_tiny", 64, 16),
    ("resnet18", 64, 32),
    ("resnet50", 64, 16),
]


def step_times(name: str, px: int, batch: int, layout: str, steps: int) -> tuple[float, float]:
    """(train step ms, eval forward ms), median over `steps` after one warm-up."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    model.train()
    for m in model.modules():  # norm=frozen: BN uses its running statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    x, y = torch.randn(batch, 3, px, px), torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(model.parameters(), 1e-4)

    def train_step() -> None:
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()

    train_step()
    train = []
    for _ in range(steps):
        t = time.perf_counter()
        train_step()
        train.append(time.perf_counter() - t)
    model.eval()
    evals = []
    with torch.no_grad():
        model(x)
        for _ in range(steps):
            t = time.perf_counter()
            model(x)
            evals.append(time.perf_counter() - t)
    return 1e3 * statistics.median(train), 1e3 * statistics.median(evals)


def end_to_end(layout: str, tmp: Path, i: int) -> dict:
    run = tmp / f"{layout}-{i}"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    setting = "auto" if layout == "channels_last" else layout
    subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "strategy=full", f"memory_format={setting}",
         f"hydra.run.dir={run}", f"cache.dir={tmp}/cache", "trainer.enable_progress_bar=false"],
        cwd=ROOT, check=True, capture_output=True, env=env,
    )  # fmt: skip
    r = json.loads((run / "results.json").read_text())
    return {"fit": r["estimate"]["actual_fit_s"], "acc": r["metrics"]["test/acc"], "used": r["memory_format"]["used"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per arm and repeat")
    ap.add_argument("--quick", action="store_true", help="the default backbone at 32 px only, 1 end-to-end repeat")
    args = ap.parse_args()
    models = MODELS[:1] if args.quick else MODELS
    rows = []
    for name, px, batch in models:
        got: dict[str, list[tuple[float, float]]] = {"contiguous": [], "channels_last": []}
        for _ in range(args.repeats):
            for layout in got:
                got[layout].append(step_times(name, px, batch, layout, args.steps))
        med = {k: (statistics.median(t for t, _ in v), statistics.median(e for _, e in v)) for k, v in got.items()}
        rows.append((name, px, batch, med))
        print(name, px, med, flush=True)
    e2e: dict[str, list[dict]] = {"contiguous": [], "channels_last": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1 if args.quick else 2):
            for layout in e2e:
                e2e[layout].append(end_to_end(layout, Path(tmp), i))
                print(layout, e2e[layout][-1], flush=True)

    lines = [
        f"Part 1: timm models, one torch thread, BN frozen, AdamW; medians of {args.repeats} interleaved repeats of "
        f"{args.steps} steps. Speed-up = contiguous time / channels_last time (> 1: channels_last is faster).",
        "",
        "| model | px | batch | depthwise convs | train step (ms) contiguous / channels_last | speed-up | "
        "eval forward (ms) contiguous / channels_last | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    import timm

    from transferlab.model.memory_format import depthwise_convs

    for name, px, batch, med in rows:
        (tc, ec), (tl, el) = med["contiguous"], med["channels_last"]
        dw = depthwise_convs(timm.create_model(name, pretrained=False))
        lines.append(
            f"| {name} | {px} | {batch} | {dw} | {tc:.0f} / {tl:.0f} | **{tc / tl:.2f}** | {ec:.0f} / {el:.0f} | "
            f"{ec / el:.2f} |"
        )
    fit = {k: statistics.median(r["fit"] for r in v) for k, v in e2e.items()}
    accs = {k: [round(r["acc"], 4) for r in v] for k, v in e2e.items()}
    lines += [
        "",
        "Part 2: `python train.py strategy=full memory_format=...` on the default task (EfficientNet-Lite0, digits, "
        f"{len(e2e['contiguous'])} interleaved repeat(s)).",
        "",
        "| memory_format | fit (s), median | test acc |",
        "|---|---|---|",
        f"| contiguous | {fit['contiguous']:.1f} | {accs['contiguous']} |",
        f"| auto (= {e2e['channels_last'][0]['used']} here) | {fit['channels_last']:.1f} | {accs['channels_last']} |",
        "",
        f"**P8: full fine-tuning of the default backbone {fit['contiguous'] / fit['channels_last']:.2f}x faster with "
        "channels_last** (fit time; test accuracy equal up to float rounding, which a 10-epoch run can amplify "
        "into a test image or two). `memory_format=auto` therefore chooses channels_last on a CPU for backbones "
        "with depthwise convolutions and batch norm (EfficientNet, MobileNet) and keeps the default layout for "
        "the others: the ResNets (no depthwise convolutions) and ConvNeXt (depthwise convolutions with LayerNorm) "
        "are not faster in channels_last here. On a GPU `auto` keeps the default: not measured.",
    ]
    write_section("P8", "P8: channels_last vs contiguous layout (CPU)", "\n".join(lines))


if __name__ == "__main__":
    main()
