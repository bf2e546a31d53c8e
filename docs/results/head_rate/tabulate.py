"""The feature-extraction head-rate study: each `strategy.lr` on val/acc (chooses) and test/acc, per size and over all.

    python docs/results/head_rate/tabulate.py multirun/head_rate [multirun/lora_rate_rank/full]

`<root>/size`, `<root>/default_job` and `<root>/text` (run_study.sh) each get a table.

The rate is chosen per size on the mean val/acc over the seeds every rate ran, and once for the default (one value for
every size) over the (size, seed) cells all rates share; never on test. The paired column is each rate minus the old
default (1e-2) on the same seed (same split, subset and batches). A second directory (full fine-tuning at its
defaults) adds the reference row per size.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from transferlab.report.stats import mean_ci, pick, strategy_setting

OLD_DEFAULT = 1e-2
SECTIONS = {
    "size": "The strategies-vs-size study's task (digits, 64 px, 80 steps)",
    "default_job": "The default job (`python train.py`: digits, 20 per class, 10 epochs)",
    "text": "Text: MiniLM on the reviews task (10 epochs)",
}


def load(root: Path) -> dict:
    """`{lr: {(size, seed): metrics}}` (full fine-tuning's runs under the key "full")."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            key = float(strategy_setting(r, "lr")) if r["strategy"] == "feature_extraction" else r["strategy"]
            runs[key][(r["train_per_class"], r["seed"])] = r["metrics"]
    return runs


def table(runs: dict, reference: dict | None = None) -> str:
    rates = sorted(k for k in runs if isinstance(k, float))
    out = [
        "| per class | head lr | seeds | **val/acc** (chooses) | test/acc | minus 1e-2, same seed | chosen |",
        "|---" * 7 + "|",
    ]
    base = runs.get(OLD_DEFAULT, {})
    for size in sorted({n for cells in runs.values() for n, _ in cells}, key=lambda n: (n is None, n or 0)):
        label = "all" if size is None else size
        at = {lr: {s: m for (n, s), m in runs[lr].items() if n == size} for lr in rates}
        best, note = pick({lr: {s: m["val/acc"] for s, m in ms.items()} for lr, ms in at.items() if ms})
        for lr, ms in at.items():
            d = [m["test/acc"] - base[(size, s)]["test/acc"] for s, m in sorted(ms.items()) if (size, s) in base]
            diff = "-" if lr == OLD_DEFAULT or not d else f"{mean_ci(d)} ({sum(x > 0 for x in d)} of {len(d)} ahead)"
            val, test = (mean_ci([m[k] for m in ms.values()]) for k in ("val/acc", "test/acc"))
            mark = "**yes**" + note if lr == best else ""
            out.append(f"| {label} | {lr:g} | {len(ms)} | {val} | {test} | {diff} | {mark} |")
        full = {s: m for (n, s), m in (reference or {}).items() if n == size}
        if full:
            val, test = (mean_ci([m[k] for m in full.values()]) for k in ("val/acc", "test/acc"))
            out.append(f"| {label} | full fine-tuning (reference) | {len(full)} | {val} | {test} | | |")
    cells = {lr: {c: m["val/acc"] for c, m in runs[lr].items()} for lr in rates}
    best, note = pick(cells)
    common = sorted(set.intersection(*(set(v) for v in cells.values()))) if cells else []
    means = {lr: sum(cells[lr][c] for c in common) / len(common) for lr in rates} if common else {}
    ranked = ", ".join(f"{lr:g} {means[lr]:.4f}" for lr in sorted(means, key=lambda k: -means[k]))
    out += [
        "",
        f"Over all sizes ({len(common)} common (size, seed) cells), mean val/acc: {ranked}. Default: **{best:g}**.",
    ]
    return "\n".join(out)


def tables(root: Path, reference: Path | None = None) -> str:
    """One section per arm of the study found under `root`: the size study's task, the default job, text."""
    ref = load(reference).get("full") if reference else None
    out = []
    for name, title in SECTIONS.items():
        if (root / name).is_dir():
            out.append(f"#### {title}\n\n{table(load(root / name), ref if name == 'size' else None)}")
    if not out:
        raise SystemExit(f"no study runs under {root}: run docs/results/head_rate/run_study.sh first")
    return "\n\n".join(out)


if __name__ == "__main__":
    print(tables(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None))
