"""Which `da.running_stats` setting each model-selection rule picks, per method, and what the pick costs.

    python docs/results/da_running_stats/choose.py multirun/da_running_stats/*

Per method (DANN, CDAN+E, DANN's weight-0 control) and setting (both / source / target): the mean over seeds of
every rule in results.json `selection` (source val accuracy and the label-free validators of the unlabelled
target val predictions; `oracle` is target val accuracy, which needs target labels) and of target test accuracy.
Each rule picks the setting with its best mean; "cost" = target test accuracy of the oracle's pick minus the
rule's pick, in points (0 = the rule chose as well as target labels would have).
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tabulate_da import method_name  # noqa: E402

SETTINGS = ("both", "source", "target")


def load(dirs: list[str]) -> dict[tuple[str, str], list[dict]]:
    """(method label without the setting, setting) -> ok results."""
    from transferlab.sweep import iter_results  # runs archived under <job>/replaced/<n>/ are not counted

    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for d in dirs:
        for _, r in iter_results(d):
            if r.get("status") == "ok" and r.get("selection"):
                stats = (r.get("da") or {}).get("running_stats", "both")
                runs[(re.sub(r", running_stats=\w+", "", method_name(r)), stats)].append(r)
    return runs


def main(dirs: list[str]) -> str:
    runs = load(dirs)
    methods = sorted({m for m, _ in runs})
    rules = sorted({k for rs in runs.values() for r in rs for k in r["selection"]})
    lines = ["| method | rule | both | source | target | picks | cost (points) |", "|---|---|---|---|---|---|---|"]
    for method in methods:
        settings = [s for s in SETTINGS if (method, s) in runs]
        if len(settings) < 2:  # nothing to choose (source-only: no target batches, every setting is the same run)
            continue
        test = {s: statistics.mean(r["metrics"]["test/target_acc"] for r in runs[(method, s)]) for s in settings}
        means: dict[str, dict[str, float]] = {}
        for rule in rules:
            vals = {s: [r["selection"][rule]["value"] for r in runs[(method, s)]] for s in settings}
            means[rule] = {s: statistics.mean(v) for s, v in vals.items() if v and None not in v}
        better = {rule: next(iter(runs[(method, settings[0])]))["selection"][rule]["better"] for rule in rules}
        pick = {rule: (max if better[rule] == "higher" else min)(m, key=m.get) for rule, m in means.items() if m}
        for rule in [*rules, "test/target_acc"]:
            if rule == "test/target_acc":
                cells, chosen, cost = [f"{100 * test[s]:.1f}" if s in test else "-" for s in SETTINGS], "", ""
            else:
                cells = [f"{means[rule][s]:.4g}" if s in means[rule] else "-" for s in SETTINGS]
                chosen = pick.get(rule, "-")
                cost = f"{100 * (test[pick['oracle']] - test[chosen]):+.1f}" if chosen in test else "-"
            lines.append(f"| {method} | {rule} | " + " | ".join(cells) + f" | {chosen} | {cost} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
