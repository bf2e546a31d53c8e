"""The backbone-lr study: per strategy and size, each `strategy.backbone_lr_mult` on val/acc (chooses) and test/acc.

    python docs/results/backbone_lr/tabulate.py multirun/backbone_lr

The multiplier is chosen per strategy and size on the mean val/acc over seeds, never on test; the paired column is
each multiplier minus the default (0.1) on the same seed (same split, subset and batches).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick

DEFAULT = 0.1


def table(root: Path) -> str:
    runs: dict = defaultdict(dict)  # (strategy, size, mult) -> {seed: metrics}
    for path in sorted(root.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            mult = float(r["config"]["strategy"]["backbone_lr_mult"])
            runs[(r["strategy"], r["train_per_class"], mult)][r["seed"]] = r["metrics"]
    out = [
        "| strategy | per class | backbone_lr_mult | seeds | **val/acc** (chooses) | test/acc | minus 0.1, same seed "
        "| chosen |",
        "|---" * 8 + "|",
    ]
    for strategy, size in sorted({(s, n) for s, n, _ in runs}):
        mults = sorted(m for s, n, m in runs if (s, n) == (strategy, size))
        val = {m: {seed: x["val/acc"] for seed, x in runs[(strategy, size, m)].items()} for m in mults}
        best, note = pick(val)
        base = runs.get((strategy, size, DEFAULT), {})
        for m in mults:
            ms = runs[(strategy, size, m)]
            d = [ms[k]["test/acc"] - base[k]["test/acc"] for k in sorted(set(ms) & set(base))]
            diff = "-" if m == DEFAULT or not d else f"{mean_ci(d)} ({sum(x > 0 for x in d)} of {len(d)} ahead)"
            mark = "**yes**" + note if m == best else ""
            out.append(
                f"| {strategy} | {size} | {m:g} | {len(ms)} | {mean_ci([x['val/acc'] for x in ms.values()])} | "
                f"{mean_ci([x['test/acc'] for x in ms.values()])} | {diff} | {mark} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(f"### {d}\n\n{table(Path(d))}\n")
