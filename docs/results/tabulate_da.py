"""Tabulate a domain-adaptation study: mean ± std over seeds of every results.json under the given dirs.

    python docs/results/tabulate_da.py multirun/<date>/<time> [more dirs ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

KEYS = ["test/target_acc", "test/target_acc_tta", "val/target_acc", "test/source_acc", "train/domain_acc"]


def method_name(r: dict) -> str:
    cfg = r["config"]
    name = r.get("adaptation") or ((cfg.get("adaptation") or {}).get("_target_", "none").rsplit(".", 1)[-1])
    if (cfg.get("adaptation") or {}).get("entropy"):
        name = "cdan_e"
    if (cfg.get("adaptation") or {}).get("weight") == 0:
        name += " (weight 0: target batches, no alignment loss)"
    if cfg.get("augment"):
        name += " + augment"
    return name


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f} (n={len(values)})"


def main(dirs: list[str]) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for d in dirs:
        for path in sorted(Path(d).rglob("results.json")):
            r = json.loads(path.read_text())
            if r.get("status") == "ok":
                groups[method_name(r)].append(r["metrics"])
    lines = ["| method | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for name, runs in sorted(groups.items()):
        cells = [fmt([m[k] for m in runs if m.get(k) is not None]) for k in KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
