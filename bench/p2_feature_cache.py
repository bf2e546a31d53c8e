"""P2: a frozen-backbone sweep (sizes x seeds) with and without the feature cache.

Counts backbone forward passes per distinct sample over the whole sweep (forward hook on the
backbone) and compares wall times. Both sweeps run in this process on the default task.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import write_section


def sweep(sizes, seeds, epochs, cache: bool, cache_dir: str) -> tuple[int, float, list]:
    from transferlab.backbones.timm import TimmBackbone
    from transferlab.config.compose import compose
    from transferlab.run import run

    counted = {"n": 0}
    original = TimmBackbone.forward

    def counting(self, x):
        counted["n"] += len(x)
        return original(self, x)

    TimmBackbone.forward = counting
    results, start = [], time.perf_counter()
    try:
        for size in sizes:
            for seed in seeds:
                with tempfile.TemporaryDirectory() as d:
                    cfg = compose(
                        [
                            f"data.train_per_class={size}",
                            f"seed={seed}",
                            f"trainer.max_epochs={epochs}",
                            "trainer.enable_progress_bar=false",
                            "logger=none",
                            "~callbacks.checkpoint",
                            f"cache={'on' if cache else 'off'}",
                            f"cache.dir={cache_dir}",
                        ],
                        d,
                    )
                    results.append(run(cfg))
    finally:
        TimmBackbone.forward = original
    return counted["n"], time.perf_counter() - start, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 80])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        n_off, t_off, r_off = sweep(args.sizes, args.seeds, args.epochs, False, cache_dir)
        n_on, t_on, r_on = sweep(args.sizes, args.seeds, args.epochs, True, cache_dir)
    from transferlab.data.sources import sklearn_digits

    distinct = len(sklearn_digits().labels)  # every split of every job draws from these 1,797 images
    same = max(abs(a["metrics"]["test/acc"] - b["metrics"]["test/acc"]) for a, b in zip(r_off, r_on, strict=False))
    body = (
        f"Default task (EfficientNet-Lite0 feature extraction on digits, 64 px), {len(args.sizes)} sizes "
        f"{args.sizes} x {len(args.seeds)} seeds, {args.epochs} epochs, one process.\n\n"
        "| | backbone forwards | per distinct sample | wall time (s) |\n|---|---|---|---|\n"
        f"| no cache | {n_off:,} | {n_off / distinct:.2f} | {t_off:.1f} |\n"
        f"| feature cache | {n_on:,} | {n_on / distinct:.2f} | {t_on:.1f} |\n\n"
        f"**P2: {n_on / distinct:.2f} backbone forwards per sample with the cache (goal <= 1.2) vs "
        f"{n_off / distinct:.1f} without; wall-time ratio uncached/cached = {t_off / t_on:.2f}.** "
        f"Largest test-accuracy difference between cached and uncached jobs: {same:.2e}."
    )
    write_section("P2", "P2: frozen-backbone sweep with and without the feature cache", body)


if __name__ == "__main__":
    main()
