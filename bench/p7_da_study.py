"""P7: backbone forwards per image for the whole DA study, and the study's wall time (before/after).

Runs `sweeps/adaptation_methods.yaml` (scale=small: 6 methods x 3 seeds = 18 jobs, 2 joblib workers) into a
fresh sweep dir with a cold feature cache, and counts, from every job's results.json, the examples that went
through the frozen part of the backbone: the passes that filled the feature cache (`forwards.cache_fill`, per
domain) plus whole-backbone passes of jobs that could not use the cache (`forwards.backbone`). Divided by the
images of each domain (the cache computes every image of a domain once: all splits, also source images no job
of the study draws). Forwards through the trainable suffix (`forwards.suffix`) are training, reported apart.

`--before DIR`: also run the same study with the code of another checkout (its `src/` and its study file),
first, on the same machine; its results.json may predate `forwards` (then `feature_cache.forwards` counts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from common import ROOT, run_sweep, write_section


def run_study(checkout: Path, d: Path, workers: int) -> tuple[float, list[dict]]:
    # partial at the 2 groups the committed DA study and P7's figures used (the default before unfrozen_depth.md)
    depth = ("strategy.trainable_groups=2",)
    env = {"TRANSFERLAB_CACHE": str(d / "cache")}
    t, t1, results = run_sweep(checkout, "adaptation_methods", d, workers, depth, env=env)
    return t1 - t, results  # a cold cache: the study pays for its own features


def domain_sizes() -> dict[str, int]:
    from transferlab.config.compose import compose
    from transferlab.config.instantiate import build

    with tempfile.TemporaryDirectory() as d:
        cfg = compose(["data=mnist_to_digits", "adaptation=dann"], d)
        data = build(cfg.data, with_target=True)
        data.prepare()
        return {k: len(dom.labels) for k, dom in data.domains.items()}


def count(results: list[dict], sizes: dict[str, int]) -> dict:
    frozen = {k: 0 for k in sizes}
    whole, suffix = 0, None
    for r in results:
        fw = r.get("forwards")
        if fw is None:  # an older checkout: only the cache's own count
            fill = (r.get("feature_cache") or {}).get("forwards", 0)
            frozen["all"] = frozen.get("all", 0) + fill
            continue
        suffix = suffix or 0
        for k, n in fw["cache_fill_by_domain"].items():
            frozen[k] += n
        whole += fw["backbone"]
        suffix += fw["suffix"]  # type: ignore[operator]
    total = sum(frozen.values()) + whole
    return {
        "per_domain": {k: frozen[k] / n for k, n in sizes.items()} if "all" not in frozen else None,
        "per_image": total / sum(sizes.values()),
        "whole": whole,
        "suffix": suffix,
        "total": total,
    }


def _commit(checkout: Path) -> str:
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--", "src", "sweeps", "train.py"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return (out.stdout.strip() or "?") + (" + uncommitted changes" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", type=Path, help="another checkout to run first (before/after on one machine)")
    args = ap.parse_args()
    sizes = domain_sizes()
    variants = ([(f"before ({_commit(args.before)})", args.before.resolve())] if args.before else []) + [
        (f"after ({_commit(ROOT)})", ROOT)
    ]
    rows = []
    for label, checkout in variants:
        with tempfile.TemporaryDirectory() as tmp:
            wall, results = run_study(checkout, Path(tmp), args.workers)
        ok = [r for r in results if r.get("status") == "ok"]
        c = count(ok, sizes)
        per_domain = (
            ", ".join(f"{k} {v:.2f}" for k, v in c["per_domain"].items()) if c["per_domain"] else "n/a (not recorded)"
        )
        fit = sum((r.get("estimate") or {}).get("actual_fit_s") or 0.0 for r in ok)
        rows.append(
            f"| {label} | {len(results)} ({len(ok)} ok) | {wall:.0f} | {fit:.0f} | {c['total']:,} "
            f"| {c['per_image']:.2f} | {per_domain} | {'n/a' if c['suffix'] is None else format(c['suffix'], ',')} |"
        )
        last = c
    body = (
        "`python train.py -m --config-dir sweeps --config-name adaptation_methods` (scale=small: 6 methods x 3 seeds, "
        f"EfficientNet-Lite0 partial, MNIST-5k -> digits, 32 px), {args.workers} joblib workers, cold feature cache. "
        f"Images per domain: {', '.join(f'{k} {n:,}' for k, n in sizes.items())}.\n\n"
        "| code | jobs | wall (s) | sum of fit (s) | frozen-part forwards | per image | per image, by domain "
        "| suffix forwards (training) |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n**P7: {last['per_image']:.2f} backbone (frozen-part) forwards per image"
        + (" (" + ", ".join(f"{k} {v:.2f}" for k, v in last["per_domain"].items()) + ")" if last["per_domain"] else "")
        + "** for the whole study (goal <= 1.5 per domain)."
    )
    write_section("P7", "P7: backbone forwards per image for the whole DA study", body)
    print(json.dumps(last))


if __name__ == "__main__":
    main()
