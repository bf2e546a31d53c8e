"""The batch-norm policy study: per strategy and size, train vs frozen vs adabn on the selection metric, then test.

    python docs/results/norm_policy/tabulate.py \
        multirun/norm_policy_digits/small multirun/norm_policy_mnist_to_digits/small

The choice is made on validation data whose labels a user has: `val/acc` on digits, `val/source_acc` on
the MNIST -> digits pair (unsupervised DA: no target labels). `val/target_acc` (needs target labels, an
oracle) and the test accuracies are shown beside it, never used to choose.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick

POLICIES = ("train", "frozen", "adabn")  # the sweeps' `strategy.norm` arms (adabn: the full grids), in table order


def table(root: Path) -> str:
    runs = defaultdict(dict)  # (strategy, size, policy) -> {seed: metrics}
    for path in sorted(root.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            runs[(r["strategy"], r["train_per_class"], r["norm"]["policy"])][r["seed"]] = r["metrics"]
    pair = any("test/target_acc" in m for ms in runs.values() for m in ms.values())
    sel, shown = (
        ("val/source_acc", ["val/target_acc", "test/target_acc", "test/source_acc"])
        if pair
        else ("val/acc", ["test/acc"])
    )
    lines = [
        f"| strategy | per class | norm | seeds | **{sel}** (chooses) | {' | '.join(shown)} | chosen |",
        "|---" * (6 + len(shown)) + "|",
    ]
    found = {p for _, _, p in runs}
    policies = [p for p in POLICIES if p in found] + sorted(found - set(POLICIES))  # no arm left out
    # by strategy, then size (null = all examples, as the full mnist_to_digits grid runs: last)
    for strategy, size in sorted({(s, n) for s, n, _ in runs}, key=lambda k: (k[0], k[1] is None, k[1] or 0)):
        scores = {p: {k: m[sel] for k, m in runs[(strategy, size, p)].items()} for p in policies}
        scores = {p: v for p, v in scores.items() if v}
        best, note = pick(scores)
        for policy in policies:
            ms = list(runs[(strategy, size, policy)].values())
            if not ms:
                continue
            cells = " | ".join(mean_ci([m[k] for m in ms if m.get(k) is not None]) for k in shown)
            lines.append(
                f"| {strategy} | {size} | {policy} | {len(ms)} | {mean_ci([m[sel] for m in ms])} | {cells} | "
                f"{'**yes**' + note if policy == best else ''} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(f"### {d}\n\n{table(Path(d))}\n")
