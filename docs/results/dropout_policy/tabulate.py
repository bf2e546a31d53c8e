"""backbone_dropout study: validation and test accuracy per strategy and policy, and the paired difference.

    python docs/results/dropout_policy/tabulate.py [multirun/dropout_policy]

Reads every results.json under the directory; prints markdown: per (strategy, policy) the dropout layers in
training mode, mean val/test accuracy ± 95 % CI over seeds, and per strategy the paired (same seed)
difference after_trainable - frozen_subtrees with its 95 % CI.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats


def mean_ci(xs: list[float]) -> str:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return f"{100 * m:.1f}"
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{100 * m:.1f} ± {100 * stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs)):.1f}"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/dropout_policy")
    runs: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for f in sorted(root.rglob("results.json")):
        if "replaced" in f.parts:
            continue
        r = json.loads(f.read_text())
        if r.get("status") == "ok":
            runs[(r["strategy"], r["dropout"]["policy"])][r["seed"]] = r
    print("| strategy | backbone_dropout | dropout layers on | seeds | val acc | test acc |")
    print("|---|---|---|---|---|---|")
    for (strategy, policy), by_seed in sorted(runs.items()):
        rs = list(by_seed.values())
        on = sorted({f"{r['dropout']['active']}/{r['dropout']['layers']}" for r in rs})
        val = [r["metrics"]["val/acc"] for r in rs]
        test = [r["metrics"]["test/acc"] for r in rs]
        print(f"| {strategy} | {policy} | {', '.join(on)} | {len(rs)} | {mean_ci(val)} | {mean_ci(test)} |")
    print("\n| strategy | paired seeds | val: new - old | test: new - old |")
    print("|---|---|---|---|")
    for strategy in sorted({s for s, _ in runs}):
        new, old = runs.get((strategy, "after_trainable"), {}), runs.get((strategy, "frozen_subtrees"), {})
        seeds = sorted(set(new) & set(old))
        if not seeds:
            continue
        dv = [new[s]["metrics"]["val/acc"] - old[s]["metrics"]["val/acc"] for s in seeds]
        dt = [new[s]["metrics"]["test/acc"] - old[s]["metrics"]["test/acc"] for s in seeds]
        print(f"| {strategy} | {len(seeds)} | {mean_ci(dv)} | {mean_ci(dt)} |")


if __name__ == "__main__":
    main()
