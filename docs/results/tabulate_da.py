"""Tabulate a domain-adaptation study: mean ± 95 % CI over seeds of every results.json under the given dirs.

    python docs/results/tabulate_da.py multirun/da_study/*          # this session's study (norm=frozen)
    python docs/results/tabulate_da.py --std multirun/<old dirs>   # mean ± std, as the 2026-11 table
    python docs/results/tabulate_da.py --vs-source-only DIRS        # pair with source-only, not the weight-0 control

Rows are labelled by method, bottleneck, weight-0 control, augmentation, the BN policy and any non-default
`da.running_stats`, `da.epoch` or `da.rng` (runs from before those existed record none: they ran `longest` and
`shared`); the last
columns are the mean optimizer steps and seconds per run. Target labels are never trained on; `val/target_acc`
needs them (an oracle).
A second table pairs every method with its weight-0 control (DANN at weight 0, same bottleneck and BN policy)
seed by seed: the mean paired difference in target test accuracy with its 95 % CI, and on how many seeds the
method was ahead. Same seed = same data split, same initialisation of the head and the same batches.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict

KEYS = [
    "test/target_acc",
    "test/target_acc_tta",
    "val/target_acc",
    "test/source_acc",
    "val/source_acc",
    "train/domain_acc",
]


def method_name(r: dict) -> str:
    cfg = r["config"]
    name = r.get("adaptation") or ((cfg.get("adaptation") or {}).get("_target_", "none").rsplit(".", 1)[-1])
    if (cfg.get("adaptation") or {}).get("entropy"):
        name = "cdan_e"
    if (cfg.get("adaptation") or {}).get("weight") == 0:
        name += " (weight 0: control)"
    if cfg.get("augment"):
        name += " + augment"
    if (cfg.get("head") or {}).get("bottleneck"):
        name = f"bottleneck {cfg['head']['bottleneck']}: {name}"
    policy = (r.get("norm") or {}).get("policy", "train")
    da = r.get("da") or {}
    stats = da.get("running_stats", "both")  # older runs: both domains moved them
    epoch = da.get("epoch", "source")  # older runs record none (they ran `longest`): unlabelled, as before
    rng = da.get("rng", "isolated")  # older runs record none (they ran `shared`): unlabelled, as before
    return (
        f"{name} [norm={policy}"
        + (f", running_stats={stats}" if stats != "both" else "")
        + (f", epoch={epoch}" if epoch != "source" else "")
        + (f", rng={rng}]" if rng != "isolated" else "]")
    )


def fmt(values: list[float], std: bool = False) -> str:
    if not values:
        return "-"
    m = statistics.mean(values)
    if len(values) < 2:
        return f"{100 * m:.1f} (n=1)"
    if std:
        return f"{100 * m:.1f} ± {100 * statistics.stdev(values):.1f} (n={len(values)})"
    from transferlab.report.stats import ci95

    return f"{100 * m:.1f} ± {100 * ci95(values):.1f} (n={len(values)})"


def main(dirs: list[str], std: bool = False, source_only: bool = False) -> str:
    from transferlab.sweep import iter_results  # runs archived under <job>/replaced/<n>/ are not counted

    groups: dict[str, list[dict]] = defaultdict(list)
    for d in dirs:
        for _, r in iter_results(d):
            if r.get("status") == "ok":
                groups[method_name(r)].append(r)
    keys = [k for k in KEYS if any(k in r["metrics"] for rs in groups.values() for r in rs)]
    lines = ["| method | " + " | ".join(keys) + " | steps | s/run |", "|---" * (len(keys) + 3) + "|"]
    for name, runs in sorted(groups.items()):
        cells = [fmt([r["metrics"][k] for r in runs if r["metrics"].get(k) is not None], std) for k in keys]
        steps = [r["global_step"] for r in runs if r.get("global_step") is not None]
        cells.append(f"{statistics.mean(steps):.0f}" if steps else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {statistics.mean(r['time_s'] for r in runs):.0f} |")
    return "\n".join(lines + ["", *paired(groups, source_only=source_only)])


def _control(name: str) -> str:
    """The weight-0 control's label for method label `name` (same bottleneck prefix and BN policy)."""
    prefix = name.split(": ", 1)[0] + ": " if name.startswith("bottleneck") else ""
    return f"{prefix}dann (weight 0: control) [{name.rsplit('[', 1)[1]}"


def _source_only(name: str) -> str:
    """The source-only label for method label `name`: same bottleneck and BN policy; the DA settings (running
    statistics, epoch, random stream) don't apply to a run without target batches."""
    prefix = name.split(": ", 1)[0] + ": " if name.startswith("bottleneck") else ""
    return f"{prefix}none [" + re.sub(r", (running_stats|epoch|rng)=\w+", "", name.rsplit("[", 1)[1])


def paired(groups: dict[str, list[dict]], metric: str = "test/target_acc", source_only: bool = False) -> list[str]:
    """Each method minus its weight-0 control (`source_only`: minus source-only) on the seeds both ran, in points."""
    from transferlab.report.stats import ci95

    against = "source-only" if source_only else "its weight-0 control"
    lines = [f"| method | {metric} minus {against}, same seed | ahead on | seeds |", "|---|---|---|---|"]
    for name, runs in sorted(groups.items()):
        control = (_source_only if source_only else _control)(name)
        if name == control or control not in groups:
            continue
        ctl = {r["config"]["seed"]: r["metrics"].get(metric) for r in groups[control]}
        diffs = [r["metrics"][metric] - ctl[s] for r in runs if ctl.get(s := r["config"]["seed"]) is not None]
        if len(diffs) < 2:
            continue
        m, ahead = statistics.mean(diffs), sum(d > 0 for d in diffs)
        lines.append(f"| {name} | {100 * m:+.1f} ± {100 * ci95(diffs):.1f} | {ahead} of {len(diffs)} | {len(diffs)} |")
    return lines


if __name__ == "__main__":
    args = sys.argv[1:]
    flags = {"--std", "--vs-source-only"}
    print(main([a for a in args if a not in flags], std="--std" in args, source_only="--vs-source-only" in args))
