"""Framework vs independent reference on the classic digits DA recipe, and what label-free selection would pick.

    python docs/results/da_reference/tabulate.py [multirun/da_reference] [multirun/da_selection/small]

Reads `reference.jsonl` (bench/da_reference.py) and every `results.json` under `framework*/` (not the runs
archived under `replaced/`), prints markdown: target/source test accuracy per method (mean ± 95 % CI over
seeds) for both implementations, the framework's gap to the reference, and per seed which method each
model-selection rule picks.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

NAMES = {"none": "source-only", "source_only": "source-only", "dann": "DANN", "cdan": "CDAN", "cdan_e": "CDAN+E"}


def mean_ci(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return m, stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))


def fmt(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    m, ci = mean_ci(xs)
    return f"{100 * m:.1f}" + ("" if math.isnan(ci) else f" ± {100 * ci:.1f}")


def label(method: str, weight) -> str:
    name = NAMES.get(method, method)
    return f"{name} weight 0 (control)" if weight == 0 else name


def _framework_runs(root: Path) -> list[dict]:
    """Every results.json under `framework*/`; runs archived under `<job>/replaced/<n>/` (a job re-run in its dir)
    are not counted again."""
    from transferlab.sweep import iter_results

    return [r for d in sorted(p for p in root.glob("framework*") if p.is_dir()) for _, r in iter_results(d)]


def main(root: Path) -> None:
    ref, fw = defaultdict(list), defaultdict(list)
    for line in (root / "reference.jsonl").read_text().splitlines():
        r = json.loads(line)
        ref[label(r["method"], r.get("weight", 1.0))].append(r)
    for r in _framework_runs(root):
        if r["status"] != "ok":
            continue
        weight = (r.get("adaptation_params") or {}).get("weight", 1.0)
        fw[label(r.get("adaptation") or "none", weight)].append(r)
    print(
        "| method | reference target acc | framework target acc | gap (framework - reference) | "
        "reference source acc | framework source acc | s/run ref / framework |\n|---|---|---|---|---|---|---|"
    )
    for name in ["source-only", "DANN", "CDAN", "CDAN+E", "DANN weight 0 (control)", "mmd", "coral", "mixup"]:
        r_t = [x["target_acc"] for x in ref[name]]
        f_t = [x["metrics"]["test/target_acc"] for x in fw[name]]
        gap = f"{100 * (mean_ci(f_t)[0] - mean_ci(r_t)[0]):+.1f}" if r_t and f_t else "n/a"
        if not r_t and not f_t:
            continue
        r_time = f"{sum(x['seconds'] for x in ref[name]) / len(ref[name]):.0f}" if r_t else "-"
        f_time = f"{sum(x['time_s'] for x in fw[name]) / max(1, len(fw[name])):.0f}"
        print(
            f"| {name} | {fmt(r_t)} (n={len(r_t)}) | {fmt(f_t)} (n={len(f_t)}) | {gap} | "
            f"{fmt([x['source_acc'] for x in ref[name]])} | {fmt([x['metrics']['test/source_acc'] for x in fw[name]])} "
            f"| {r_time} / {f_time} |"
        )
    selection(fw)


def selection(fw: dict) -> None:
    """Per seed, the method each rule picks among the framework's runs, its test target accuracy, and the loss."""
    by_seed = defaultdict(dict)
    for name, runs in fw.items():
        for r in runs:
            by_seed[r["seed"]][name] = r
    rules = ["oracle", "source_val_acc", "entropy", "info_max", "snd"]
    print(
        "\n| rule (needs target labels?) | picks (seed 0, 1, 2) | test target acc of the pick | lost vs oracle |"
        "\n|---|---|---|---|"
    )
    oracle_acc = []
    for rule in rules:
        picks, accs = [], []
        for seed in sorted(by_seed):
            runs = by_seed[seed]
            sel = {n: r["selection"][rule] for n, r in runs.items() if r.get("selection")}
            scored = {n: s["value"] for n, s in sel.items() if s["value"] is not None}
            if not scored:
                continue
            better = next(iter(sel.values()))["better"]
            pick = (max if better == "higher" else min)(scored, key=scored.get)
            picks.append(pick)
            accs.append(runs[pick]["metrics"]["test/target_acc"])
        if rule == "oracle":
            oracle_acc = accs
        lost = f"{100 * (mean_ci(oracle_acc)[0] - mean_ci(accs)[0]):.1f}" if accs and oracle_acc else "n/a"
        print(f"| {rule} ({'yes' if rule == 'oracle' else 'no'}) | {', '.join(picks)} | {fmt(accs)} | {lost} |")


def per_method(root: Path) -> None:
    """Per method and seed, the alignment weight each rule picks (among the sweep's weights), and its cost."""
    runs = defaultdict(dict)  # (method, seed) -> {weight: result}
    for path in sorted(root.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok":
            runs[(r["adaptation"], r["seed"])][r["adaptation_params"]["weight"]] = r
    rules = ["oracle", "source_val_acc", "entropy", "info_max", "snd"]
    print(
        "\n| method | rule | weights picked (seed 0, 1, 2) | test target acc of the pick | lost vs oracle |"
        "\n|---|---|---|---|---|"
    )
    for method in sorted({m for m, _ in runs}):
        oracle = None
        for rule in rules:
            picks, accs = [], []
            for seed in sorted(s for m, s in runs if m == method):
                cands = runs[(method, seed)]
                scored = {w: r["selection"][rule]["value"] for w, r in cands.items()}
                better = next(iter(cands.values()))["selection"][rule]["better"]
                pick = (max if better == "higher" else min)(scored, key=scored.get)
                picks.append(f"{pick:g}")
                accs.append(cands[pick]["metrics"]["test/target_acc"])
            oracle = accs if rule == "oracle" else oracle
            lost = f"{100 * (mean_ci(oracle)[0] - mean_ci(accs)[0]):.1f}"
            print(f"| {NAMES.get(method, method)} | {rule} | {', '.join(picks)} | {fmt(accs)} | {lost} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "multirun/da_reference"))
    if len(sys.argv) > 2:
        per_method(Path(sys.argv[2]))
