"""The BERT recipe study: per (schedule, epochs, rate) val/acc (chooses) and test/acc, then the paired controls.

    python docs/results/bert_recipe/tabulate.py multirun/bert_recipe

The setting is chosen on the mean val/acc over the seeds every setting ran (`transferlab.report.stats.choose`),
never on test. The paired tables subtract, seed by seed, a constant rate from the recipe's warm-up + linear decay
at the same rate, and 3 epochs from 10 at the same rate.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick


def setting(r: dict) -> tuple[str, int, float]:
    """(schedule, epochs, rate) of a run."""
    cfg = r["config"]
    schedule = "warm-up 10 % + linear decay" if cfg.get("scheduler") else "constant"
    return schedule, int(cfg["trainer"]["max_epochs"]), float(cfg["strategy"]["lr"])


def load(root: Path) -> dict:
    """setting -> {seed: metrics} for the ok runs under `root`."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("**/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            runs[setting(r)][r["seed"]] = r["metrics"] | {"time_s": r["time_s"]}
    if not runs:
        raise SystemExit(f"no finished runs under {root}: run docs/results/bert_recipe/run_study.sh first")
    return runs


def table(runs: dict) -> str:
    scores = {k: {s: m["val/acc"] for s, m in ms.items()} for k, ms in sorted(runs.items(), key=lambda kv: kv[0][::-1])}
    best, note = pick(scores)  # ties: the lower rate, then the fewer epochs
    out = [
        "| schedule | epochs | lr | seeds | **val/acc** (chooses) | test/acc | s per run | chosen |",
        "|---" * 8 + "|",
    ]
    for key in sorted(runs):
        ms = runs[key]
        t = sum(m["time_s"] for m in ms.values()) / len(ms)
        cells = [mean_ci([m[k] for m in ms.values()]) for k in ("val/acc", "test/acc")]
        mark = "**yes**" + note if key == best else ""
        out.append(f"| {key[0]} | {key[1]} | {key[2]:g} | {len(ms)} | {cells[0]} | {cells[1]} | {t:.0f} | {mark} |")
    return "\n".join(out)


def paired(runs: dict, title: str, pairs: list[tuple[tuple, tuple]]) -> str:
    """test/acc of `a` minus `b`, seed by seed, for each (a, b) pair that both ran."""
    out = [f"| {title} | test/acc difference, same seed | ahead on |", "|---|---|---|"]
    for a, b in pairs:
        if a in runs and b in runs:
            d = [runs[a][s]["test/acc"] - runs[b][s]["test/acc"] for s in sorted(set(runs[a]) & set(runs[b]))]
            out.append(f"| lr {a[2]:g} | {mean_ci(d)} | {sum(x > 0 for x in d)} of {len(d)} |")
    return "\n".join(out)


def tables(runs: dict) -> str:
    recipe = "warm-up 10 % + linear decay"
    rates = sorted({k[2] for k in runs})
    schedule = paired(runs, "recipe schedule minus constant rate, 3 epochs",
                      [((recipe, 3, lr), ("constant", 3, lr)) for lr in rates])  # fmt: skip
    epochs = paired(runs, "10 epochs minus 3 (recipe schedule)", [((recipe, 10, lr), (recipe, 3, lr)) for lr in rates])
    return f"{table(runs)}\n\n{schedule}\n\n{epochs}"


if __name__ == "__main__":
    print(tables(load(Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/bert_recipe"))))
