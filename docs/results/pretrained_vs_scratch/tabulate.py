"""Pretrained vs from scratch: per arm and training-set size, the configuration chosen on val/acc, then its test.

    python docs/results/pretrained_vs_scratch/tabulate.py multirun/pretrained_vs_scratch
    python docs/results/pretrained_vs_scratch/tabulate.py --chosen multirun/pretrained_vs_scratch   # for run_study.sh

Each arm's grid (head lr x batch-norm policy) is chosen per size on the mean val/acc over seeds, never on test; the
test accuracy of every configuration is shown beside it. The paired table subtracts the chosen scratch arm from the
chosen pretrained arm seed by seed (same split, same training subset, same batches).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick

SEL = "val/acc"
ARMS = ("pretrained", "scratch", "lenet", "features", "long_pretrained", "long_scratch", "long_lenet")


def setting(r: dict) -> tuple:
    """What the arm's grid varies: (label, overrides that reproduce it)."""
    c = r["config"]
    if r["strategy"] == "feature_extraction":
        pre = c["backbone"].get("pretrained", True)
        return (
            f"{'pretrained' if pre else 'random'} features",
            f"strategy=feature_extraction backbone.pretrained={pre}",
        )
    lr, norm = c["strategy"]["lr"], r["norm"]["policy"]
    base = "strategy=full"
    if c["backbone"]["name"] == "lenet":
        return (
            f"lr {lr:g}",
            f"{base} backbone=lenet data.image_size=28 strategy.backbone_lr_mult=1.0 strategy.lr={lr:g}",
        )
    if not c["backbone"].get("pretrained", True):
        base += " backbone.pretrained=false strategy.backbone_lr_mult=1.0"
    return (f"lr {lr:g}, norm {norm}", f"{base} strategy.lr={lr:g} strategy.norm={norm}")


def load(root: Path) -> dict:
    """{arm: {size: {setting: {seed: metrics}}}} for every finished run under root/<arm>/."""
    runs: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for path in sorted(root.glob("*/*/results.json")):
        r = json.loads(path.read_text())
        if r["status"] != "ok":
            continue
        arm = path.parent.parent.name  # long_<arm>_<size>: the long budget's re-run of one arm and size
        arm = arm.rsplit("_", 1)[0] if arm.startswith("long_") else arm
        m = dict(r["metrics"], steps=r["global_step"], fit_s=r["stage_s"]["fit"])
        runs[arm][r["train_per_class"]][setting(r)][r["seed"]] = m
    return runs


def chosen(by_setting: dict) -> tuple:
    """(The setting with the best mean val/acc over the seeds every setting ran, the note on those seeds)."""
    return pick({s: {seed: m[SEL] for seed, m in ms.items()} for s, ms in by_setting.items()})


def tables(root: Path) -> str:
    runs = load(root)
    arms = [a for a in ARMS if a in runs] + sorted(a for a in runs if a not in ARMS)
    out = [
        "| arm | per class | setting | seeds | steps | **val/acc** (chooses) | test/acc | fit s | chosen |",
        "|---" * 9 + "|",
    ]
    for arm in arms:
        for size in sorted(runs[arm]):
            by = runs[arm][size]
            best, note = chosen(by) if arm != "features" else (None, "")
            for s in sorted(by):
                ms = list(by[s].values())
                mark = "**yes**" + note if s == best else ""
                out.append(
                    f"| {arm} | {size} | {s[0]} | {len(ms)} | {ms[0]['steps']} | {mean_ci([m[SEL] for m in ms])} | "
                    f"{mean_ci([m['test/acc'] for m in ms])} | {sum(m['fit_s'] for m in ms) / len(ms):.0f} | {mark} |"
                )
    out += ["", paired(runs, "pretrained"), "", paired(runs, "long_pretrained")]
    return "\n".join(out)


def paired(runs: dict, base: str) -> str:
    """Chosen `base` minus each other arm of the same budget (chosen config), same seed: mean ± 95 % CI, seeds ahead."""
    if base not in runs:
        return ""
    lines = [f"| per class | {base} (chosen) | minus | difference, same seed | {base} ahead on |", "|---" * 5 + "|"]
    for arm in [a for a in runs if a != base and a.startswith("long_") == base.startswith("long_")]:
        for size in sorted(runs[base]):
            best, by = chosen(runs[base][size])[0], runs[arm].get(size)
            other = chosen(by)[0] if by and arm != "features" else None
            if best is None or not by or (other is None and arm != "features"):  # not run, or no common seed yet
                continue
            p = runs[base][size][best]
            for s in [other] if arm != "features" else sorted(by):
                o = by[s]
                seeds = sorted(set(p) & set(o))
                d = [p[k]["test/acc"] - o[k]["test/acc"] for k in seeds]
                if d:
                    lines.append(
                        f"| {size} | {mean_ci([p[k]['test/acc'] for k in seeds])} | {arm}: {s[0]} | "
                        f"{mean_ci(d)} | {sum(x > 0 for x in d)} of {len(d)} |"
                    )
    return "\n".join(lines)


def chosen_overrides(root: Path) -> str:
    """One line per arm and size: '<arm>_<size> <overrides>' (the long-budget re-runs of run_study.sh)."""
    runs, lines = load(root), []
    for arm in ("pretrained", "scratch", "lenet"):
        for size in sorted(runs.get(arm, {})):
            lines.append(f"{arm}_{size} {chosen(runs[arm][size])[0][1]} data.train_per_class={size}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--chosen":
        print(chosen_overrides(Path(args[1])))
    else:
        for d in args:
            print(f"### {d}\n\n{tables(Path(d))}\n")
