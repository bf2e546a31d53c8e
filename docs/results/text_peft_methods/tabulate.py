"""The text PEFT-methods study: per method and `strategy.peft_lr`, val/acc (chooses the rate per method, never test)
and test/acc (a tie keeps the lower rate); then each method at its chosen rate, paired seed by seed with LoRA at
its chosen rate.

    python docs/results/text_peft_methods/tabulate.py multirun/text_peft_methods
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick, strategy_setting

REFERENCE = "lora"


def rate(result: dict) -> float:
    """The rate the peft parameters trained at: what LoRA's `peft_lr: auto` resolved to (results.json
    `strategy_choices`), else `peft_lr`, or `lr` where it is null (the strategy's fallback)."""
    peft_lr = strategy_setting(result, "peft_lr")
    return float(peft_lr if peft_lr is not None else strategy_setting(result, "lr"))


def load(root: Path) -> dict:
    """(strategy, peft_lr) -> {seed: result} for the ok runs under `root`."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("**/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            runs[(r["strategy"], rate(r))][r["seed"]] = r
    if not runs:
        raise SystemExit(f"no finished runs under {root}: run docs/results/text_peft_methods/run_study.sh first")
    return runs


def chosen(runs: dict) -> dict[str, tuple[float, str]]:
    """method -> (the rate its mean val/acc picks over the seeds all its rates ran, the note on those seeds)."""
    out: dict[str, tuple[float, str]] = {}
    for s in sorted({s for s, _ in runs}):
        scores = {
            lr: {k: r["metrics"]["val/acc"] for k, r in runs[(m, lr)].items()} for m, lr in sorted(runs) if m == s
        }
        out[s] = pick(scores)  # ascending rates: a tie keeps the lower one
    return out


def tables(runs: dict) -> str:
    pick = chosen(runs)
    head = "| method | peft_lr | seeds | trainable (share) | **val/acc** (chooses) | test/acc | s per run | chosen |"
    out = [head, "|---" * 8 + "|"]
    for (s, lr), rs in sorted(runs.items()):
        p = next(iter(rs.values()))["params"]
        t = sum(r["time_s"] for r in rs.values()) / len(rs)
        cells = [mean_ci([r["metrics"][k] for r in rs.values()]) for k in ("val/acc", "test/acc")]
        share = f"{p['trainable']:,} ({100 * p['trainable'] / p['total']:.2f} %)"
        out.append(f"| {s} | {lr:g} | {len(rs)} | {share} | {cells[0]} | {cells[1]} | {t:.0f} | "
                   f"{'**yes**' + pick[s][1] if pick[s][0] == lr else ''} |")  # fmt: skip
    ref = runs.get((REFERENCE, pick[REFERENCE][0]), {}) if REFERENCE in pick else {}
    out += ["", f"At the chosen rate, minus {REFERENCE} at its chosen rate on the same seed (test/acc):", "",
            "| method | test/acc | minus lora, same seed | ahead on |", "|---|---|---|---|"]  # fmt: skip
    for s in sorted(k for k in pick if pick[k][0] is not None):  # none: no seed common to its rates yet
        rs = runs[(s, pick[s][0])]
        d = [rs[k]["metrics"]["test/acc"] - ref[k]["metrics"]["test/acc"] for k in sorted(set(rs) & set(ref))]
        diff = ("-", "-") if s == REFERENCE or not d else (mean_ci(d), f"{sum(x > 0 for x in d)} of {len(d)}")
        out.append(f"| {s} | {mean_ci([r['metrics']['test/acc'] for r in rs.values()])} | {diff[0]} | {diff[1]} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(load(Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/text_peft_methods"))))
