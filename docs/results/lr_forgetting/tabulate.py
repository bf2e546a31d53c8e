"""The LR-and-forgetting study: per training-set size, each (head LR, backbone multiplier) of full fine-tuning and
the frozen-backbone control, chosen on the label-free val/source_acc, never on test.

    python docs/results/lr_forgetting/tabulate.py multirun/lr_forgetting

Trained on MNIST: `test/source_acc` is the task the run fits, `test/target_acc` (scikit-learn digits, never trained
on) what carries over beyond it. The paired column is each arm minus the control (feature extraction: the backbone
cannot forget) on the same seed. `val/target_acc` needs target labels: shown only to price the label-free choice.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick

CONTROL = "feature extraction (backbone frozen)"


def arm(r: dict) -> tuple[float, str]:
    """(sort key: the backbone's LR, label)."""
    s = r["config"]["strategy"]
    if r["strategy"] == "feature_extraction":
        return 0.0, CONTROL
    lr, mult = float(s["lr"]), float(s["backbone_lr_mult"])
    return lr * mult, f"backbone {lr * mult:g} (head {lr:g}, x{mult:g})"


def load(root: Path) -> dict:
    """(per class, arm) -> {seed: metrics} for the ok runs under `root`."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("**/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            runs[(r["train_per_class"], arm(r))][r["seed"]] = r["metrics"]
    if not runs:
        raise SystemExit(f"no finished runs under {root}: run docs/results/lr_forgetting/run_study.sh first")
    return runs


def table(runs: dict) -> str:
    keys = ("val/source_acc", "test/source_acc", "val/target_acc", "test/target_acc")
    head = ["per class", "arm", "seeds", "**val/source_acc** (chooses)", "test/source_acc", "val/target_acc (oracle)",
            "test/target_acc", "test/target_acc minus the control, same seed", "chosen on"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for size in sorted({n for n, _ in runs}, reverse=True):
        arms = sorted(a for n, a in runs if n == size)
        picks: dict = defaultdict(list)
        for rule in ("val/source_acc", "val/target_acc"):
            scores = {a: {seed: m[rule] for seed, m in runs[(size, a)].items()} for a in arms}
            best, note = pick(scores)
            picks[best].append(rule + note)
        base = next((runs[(size, a)] for a in arms if a[1] == CONTROL), {})
        for a in arms:
            ms = runs[(size, a)]
            d = [ms[s]["test/target_acc"] - base[s]["test/target_acc"] for s in sorted(set(ms) & set(base))]
            diff = "-" if a[1] == CONTROL or not d else f"{mean_ci(d)} ({sum(x > 0 for x in d)} of {len(d)} ahead)"
            cells = [mean_ci([m[k] for m in ms.values()]) for k in keys]
            row = [str(size), a[1], str(len(ms)), cells[0], cells[1], cells[2], cells[3], diff, ", ".join(picks[a])]
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(load(Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/lr_forgetting"))))
