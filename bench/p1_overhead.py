"""P1: per-step overhead of a transferlab run vs a hand-written PyTorch loop.

Same model (EfficientNet-Lite0, packaged weights, full fine-tuning), same data (digits, 32 px),
batch size, AdamW parameter groups and number of steps. Both run in this process, interleaved
`--repeats` times; the figure is the median framework step time over the median plain step time.

A second part runs the same pair on LeNet (28 px, ~20 ms steps), where the model's compute is small enough
that the framework's own milliseconds per step are resolved on a noisy shared machine: the figure that does
not shrink or grow with the model (the ratio above does).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import write_section


def plain_loop(steps: int, image_size: int, model: str = "efficientnet_lite0") -> list[float]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from transferlab.backbones.lenet import LeNet
    from transferlab.backbones.timm import TimmBackbone
    from transferlab.backbones.weights import efficientnet_lite0
    from transferlab.data.images import ArrayImageData
    from transferlab.data.sources import sklearn_digits
    from transferlab.model import depthwise_crop, memory_format
    from transferlab.model.norm import apply_policy
    from transferlab.strategies.full import Full

    torch.manual_seed(0)
    data = ArrayImageData(sklearn_digits, image_size=image_size, train_per_class=None, batch_size=32).prepare()
    if model == "lenet":
        backbone = LeNet()  # backbone=lenet's defaults (dropout 0.5)
    else:
        backbone = TimmBackbone("tf_efficientnet_lite0", weights=efficientnet_lite0())
    data.build(backbone.preprocessing)
    head = nn.Sequential(nn.Dropout(0.0), nn.Linear(backbone.num_features, 10))
    strategy = Full()
    # the same memory layout as the framework run (memory_format=auto: channels_last here)
    memory_format.apply(backbone, memory_format.choose("auto", backbone, "cpu")["used"])
    if depthwise_crop.choose("auto", backbone, "cpu")["used"]:  # and the same kernels (depthwise_crop=auto)
        depthwise_crop.apply(backbone)
    backbone = strategy.apply(backbone, head)
    opt = torch.optim.AdamW(strategy.param_groups(backbone, head), weight_decay=0.01)
    backbone.train(), head.train()
    apply_policy(backbone, strategy.norm)  # the same batch-norm semantics as the framework run (norm=frozen)
    times, it = [], iter(data.train_dataloader())
    for _ in range(steps):
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(data.train_dataloader())
            batch = next(it)
        loss = F.cross_entropy(head(backbone(batch["inputs"])), batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times


def framework(steps: int, image_size: int, model: str = "efficientnet_lite0", extra: tuple = ()) -> list[float]:
    from transferlab.config.compose import compose
    from transferlab.run import run

    with tempfile.TemporaryDirectory() as d:
        cfg = compose(
            [
                "strategy=full",
                "strategy.backbone_lr_mult=0.1",
                f"data.image_size={image_size}",
                "data.train_per_class=null",
                f"trainer.max_steps={steps}",
                "trainer.max_epochs=100",
                "trainer.limit_val_batches=0",
                "trainer.enable_progress_bar=false",
                "logger=none",
                "~callbacks.checkpoint",
                "~callbacks.lr_monitor",
                "cache=off",
                "+callbacks.timer._target_=transferlab.callbacks.timer.StepTimer",
                *(["backbone=lenet"] if model == "lenet" else []),
                *extra,
            ],
            d,
        )
        return run(cfg)["timing"]["step_s_all"]


PARTS = {  # (file suffix, function) -> what it is; cumulative times, summed over the profiled run; no overlaps
    "training_step (forward, loss, its self.log calls, train accuracy)": [
        ("transferlab/model/module.py", "training_step")
    ],
    "backward": [("torch/_tensor.py", "backward")],
    "optimizer update (AdamW)": [("torch/optim/adam.py", "adam")],
    "zero_grad": [("torch/optim/optimizer.py", "zero_grad")],
    "next batch (data loading)": [("lightning/pytorch/loops/fetchers.py", "__next__")],
    "callbacks' hooks (NanGuard, estimate, LR monitor, timer)": [
        ("lightning/pytorch/trainer/call.py", "_call_callback_hooks")
    ],
}
INSIDE = {"of which self.log": ("lightning/pytorch/core/module.py", "log")}  # part of training_step above


def profile(steps: int, image_size: int) -> str:
    """The framework run under cProfile: where a training step's time goes (cumulative per part; the
    profiler inflates Python-heavy parts, so read it as an attribution, not as timings)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    framework(steps, image_size)
    prof.disable()
    st = pstats.Stats(prof).stats

    def cum(file: str, func: str) -> float:
        return sum(v[3] for (f, _, fn), v in st.items() if f.endswith(file) and fn == func)

    total = cum("lightning/pytorch/loops/training_epoch_loop.py", "advance")
    rows, known = [], 0.0
    for part, keys in PARTS.items():
        t = sum(cum(*k) for k in keys)
        known += t
        rows.append(f"| {part} | {1000 * t / steps:.1f} | {t / total:.1%} |")
    for part, key in INSIDE.items():
        rows.insert(1, f"| ({part}) | ({1000 * cum(*key) / steps:.1f}) | ({cum(*key) / total:.1%}) |")
    rows.append(
        f"| the rest (Lightning's loop, closures, hooks of the module) | {1000 * (total - known) / steps:.1f} "
        f"| {(total - known) / total:.1%} |"
    )
    return (
        f"Profile of the transferlab run ({steps} steps under cProfile; ms per step, share of the training loop's "
        "`advance`):\n\n| part | ms/step | share |\n|---|---|---|\n" + "\n".join(rows)
    )


def small_model(steps: int, repeats: int) -> str:
    """The same pair on LeNet: the framework's own cost per step in milliseconds (median of per-repeat
    differences), resolved because the model's step is ~20 ms rather than ~110-200 ms."""
    rows, diffs = [], []
    for r in range(repeats):
        p = statistics.median(plain_loop(steps, 28, "lenet")[3:])
        f = statistics.median(framework(steps, 28, "lenet")[3:])
        diffs.append(f - p)
        rows.append(f"| {r} | {1000 * p:.1f} | {1000 * f:.1f} | {1000 * (f - p):+.1f} |")
    return (
        f"LeNet (random init, full training, digits at 28 px, batch 32), {steps} steps, the same interleaving:\n\n"
        "| repeat | plain PyTorch (ms/step) | transferlab (ms/step) | framework cost (ms/step) |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n**Framework cost per training step: {1000 * statistics.median(diffs):.1f} ms** (median of repeats)."
    )


FILL = {  # trainer.deterministic=true and torch's NaN-fill of new tensors (transferlab's default: no fill)
    "deterministic, fill_uninitialized_memory=true": ("fill_uninitialized_memory=true",),
    "deterministic, fill_uninitialized_memory=false (default)": ("fill_uninitialized_memory=false",),
    "trainer.deterministic=false": ("trainer.deterministic=false",),
}


def fill_ab(steps: int, image_size: int, repeats: int) -> str:
    """The framework's step with and without torch's NaN-fill of new tensors, and non-deterministic, interleaved
    with the plain loop (which runs after the non-deterministic arm: no fill)."""
    times: dict[str, list[float]] = {"plain PyTorch": [], **{k: [] for k in FILL}}
    for _ in range(repeats):
        for name, extra in FILL.items():
            times[name].append(statistics.median(framework(steps, image_size, extra=extra)[3:]))
        times["plain PyTorch"].append(statistics.median(plain_loop(steps, image_size)[3:]))
    plain = statistics.median(times["plain PyTorch"])
    rows = [
        f"| {k} | {1000 * statistics.median(v):.1f} | {statistics.median(v) / plain:.3f} |" for k, v in times.items()
    ]
    return (
        f"`trainer.deterministic=true` and torch's `fill_uninitialized_memory` (EfficientNet-Lite0, {image_size} px, "
        f"median of {repeats} interleaved repeats):\n\n| run | ms/step | vs plain |\n|---|---|---|\n" + "\n".join(rows)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--profile", action="store_true", help="add a cProfile breakdown of the framework's step")
    ap.add_argument("--small-steps", type=int, default=200, help="steps of the LeNet part (0: skip it)")
    ap.add_argument("--fill", action="store_true", help="add the fill_uninitialized_memory comparison")
    args = ap.parse_args()
    ratios, rows = [], []
    for r in range(args.repeats):
        p = statistics.median(plain_loop(args.steps, args.image_size)[3:])
        f = statistics.median(framework(args.steps, args.image_size)[3:])
        ratios.append(f / p)
        rows.append(f"| {r} | {1000 * p:.1f} | {1000 * f:.1f} | {f / p:.3f} |")
    body = (
        f"Full fine-tuning of EfficientNet-Lite0 on digits ({args.image_size} px, batch 32), {args.steps} steps, "
        f"median step time (first 3 steps excluded), interleaved repeats.\n\n"
        "| repeat | plain PyTorch (ms/step) | transferlab (ms/step) | ratio |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n**P1 overhead ratio (median of repeats): {statistics.median(ratios):.3f}** "
        "(goal <= 1.05, limit 1.10). Both sides use the same batch-norm semantics (`norm=frozen`: pretrained "
        "statistics) and AdamW parameter groups."
    )
    if args.small_steps:
        body += "\n\n" + small_model(args.small_steps, args.repeats)
    if args.fill:
        body += "\n\n" + fill_ab(args.steps, args.image_size, args.repeats)
    if args.profile:
        body += "\n\n" + profile(args.steps, args.image_size)
    write_section("P1", "P1: per-step overhead vs a plain PyTorch loop", body)


if __name__ == "__main__":
    main()
