"""The unfrozen-depth study: how many layer groups train, per task and size, chosen on validation, never on test.

    python docs/results/unfrozen_depth/tabulate.py multirun/unfrozen_depth

`digits_*` runs (in domain) are chosen on `val/acc`. `shift_*` runs (MNIST -> digits) are chosen on the label-free
`val/source_acc`; `val/target_acc` (the oracle, it needs target labels) is shown only to measure what that rule
costs. The paired column is each arm minus partial with 2 groups (the default before this study) on the same seed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import choose, mean_ci, on_seeds, pick

DEFAULT = "partial 2"
ALL = 99  # full fine-tuning sorts after every partial depth


def arm(r: dict) -> tuple[int, str]:
    """(sort key, label): feature extraction 0, partial k, full."""
    if r["strategy"] == "feature_extraction":
        return 0, "feature_extraction (0)"
    if r["strategy"] == "full":
        return ALL, "full (all)"
    k = int(r["config"]["strategy"]["trainable_groups"])
    return k, f"partial {k}"


def load(root: Path, prefix: str) -> dict:
    """(per class, arm) -> {seed: result} for the ok runs under `root/prefix*`."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob(f"{prefix}*/**/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            runs[(r["train_per_class"], arm(r))][r["seed"]] = r
    if not runs:
        raise SystemExit(f"no finished runs under {root}/{prefix}*: run docs/results/unfrozen_depth/run_study.sh first")
    return runs


def _scores(runs: dict, size: int, arms: list, key: str) -> dict:
    """arm -> {seed: `key`} at one size, what `choose` compares."""
    return {a: {seed: r["metrics"][key] for seed, r in runs[(size, a)].items()} for a in arms}


def _paired(ms: dict, base: dict, key: str, label: str) -> str:
    d = [ms[s]["metrics"][key] - base[s]["metrics"][key] for s in sorted(set(ms) & set(base))]
    return "-" if label == DEFAULT or not d else f"{mean_ci(d)} ({sum(x > 0 for x in d)} of {len(d)} ahead)"


def table(root: Path, prefix: str, rule: str, report: str, extra: tuple[str, ...] = ()) -> str:
    """One row per size and arm: the `rule` metric (picks the arm per size), `report` (test), `extra` columns."""
    runs = load(root, prefix)
    head = ["per class", "arm", "trainable params", "seeds", f"**{rule}** (chooses)", *extra, report,
            f"{report} minus {DEFAULT}, same seed", "chosen"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for size in sorted({n for n, _ in runs}):
        arms = sorted(a for n, a in runs if n == size)
        scores = _scores(runs, size, arms, rule)
        best, note = pick(scores)
        base = next((runs[(size, a)] for a in arms if a[1] == DEFAULT), {})
        for a in arms:
            ms = runs[(size, a)]
            params = next(iter(ms.values()))["params"]["trainable"]
            cells = [mean_ci([r["metrics"][k] for r in ms.values()]) for k in (rule, *extra, report)]
            row = [str(size), a[1], f"{params / 1e6:.2f} M", str(len(ms)), *cells, _paired(ms, base, report, a[1]),
                   "**yes**" + note if a == best else ""]  # fmt: skip
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def selection_cost(root: Path, prefix: str, rules: tuple[str, ...], oracle: str, report: str) -> str:
    """What each rule picks (mean over the seeds every arm ran) and its test `report` against the oracle's pick."""
    runs = load(root, prefix)
    out = [f"| per class | rule | picks | {report} | lost against the oracle (points) |", "|---" * 5 + "|"]
    for size in sorted({n for n, _ in runs}):
        arms = sorted(a for n, a in runs if n == size)  # the order table() breaks ties in
        scores = _scores(runs, size, arms, oracle)
        try:
            oracle_pick, seeds = choose(scores)
        except ValueError:  # no seed common to every arm yet (a sweep still running)
            continue
        note = on_seeds(scores, seeds)
        test = {a: sum(v[k] for k in seeds) / len(seeds) for a, v in _scores(runs, size, arms, report).items()}
        best = test[oracle_pick]
        for rule in (*rules, oracle):
            chosen = choose(_scores(runs, size, arms, rule))[0]
            out.append(
                f"| {size} | `{rule}` | {chosen[1]}{note} | {test[chosen]:.3f} | {100 * (best - test[chosen]):.1f} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/unfrozen_depth")
    print("### digits, in domain (chosen on val/acc)\n")
    print(table(root, "digits", "val/acc", "test/acc"))
    print("\n### MNIST -> digits (chosen on the label-free val/source_acc)\n")
    print(table(root, "shift", "val/source_acc", "test/target_acc", ("val/target_acc", "test/source_acc")))
    print("\nWhat each rule picks, and what it costs against the oracle (val/target_acc, needs target labels):\n")
    print(selection_cost(root, "shift", ("val/source_acc",), "val/target_acc", "test/target_acc"))
