"""Table of the pixel-level DA study: mean ± std (sample, ddof=1) over seeds per direction and arm.

python docs/results/pixel_level/tabulate.py [multirun/pixel_level]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ORDER = ["none", "cyclegan"]


def cell(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "-"
    m = statistics.mean(values) * scale
    return f"{m:.1f} ± {statistics.stdev(values) * scale:.1f}" if len(values) > 1 else f"{m:.1f}"


def metric(runs: list[dict], key: str) -> list[float]:
    return [r["metrics"][key] for r in runs if r["metrics"].get(key) is not None]


def main(root: Path) -> None:
    print(
        "| direction | arm | n | test/target_acc | minus its weight-0 control, same seed | val/target_acc | "
        "test/source_acc | steps | time per run (s) | translator |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for direction in ("mnist_to_digits", "digits_to_mnist"):
        if not (root / direction).is_dir():
            continue
        arms = sorted(
            (p for p in (root / direction).iterdir() if p.is_dir()),
            key=lambda p: (ORDER.index(p.name) if p.name in ORDER else len(ORDER), p.name),
        )
        for arm in arms:
            runs = [json.loads(p.read_text()) for p in sorted(arm.glob("seed*/results.json"))]
            runs = [r for r in runs if r["status"] == "ok"]
            if not runs:
                continue
            tr = [r["translate"] for r in runs if r.get("translate")]
            how = ""
            if tr:
                trained = [t for t in tr if not t["reused"]]
                how = f"{len(trained)} trained, {len(tr) - len(trained)} reused"
            seeds = ",".join(str(r["seed"]) for r in runs)
            print(
                f"| {direction} | {arm.name} | {len(runs)} (seeds {seeds}) | {cell(metric(runs, 'test/target_acc'))} | "
                f"{paired(runs, arm.parent / f'{arm.name}_w0')} | {cell(metric(runs, 'val/target_acc'))} | "
                f"{cell(metric(runs, 'test/source_acc'))} | {statistics.mean(r['global_step'] for r in runs):.0f} | "
                f"{statistics.mean(r['time_s'] for r in runs):.0f} | {how} |"
            )


def paired(runs: list[dict], control: Path) -> str:
    """Target test accuracy minus the weight-0 control's (arm `<name>_w0`: the same batches and steps, the
    alignment loss switched off) on the same seed, mean ± std in points; "-" without a control."""
    ctl = {}
    for p in sorted(control.glob("seed*/results.json")):
        r = json.loads(p.read_text())
        if r["status"] == "ok":
            ctl[r["seed"]] = r["metrics"]["test/target_acc"]
    diffs = [r["metrics"]["test/target_acc"] - ctl[r["seed"]] for r in runs if r["seed"] in ctl]
    return cell(diffs) if diffs else "-"


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/pixel_level"))
