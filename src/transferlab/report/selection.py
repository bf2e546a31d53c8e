"""Label-free model selection in a report: which configuration each rule would pick, and what that costs.

Unsupervised DA has no target labels to choose hyper-parameters with. Every domain-pair run writes, in
results.json `selection`, the scores of the rules that need none (source val accuracy, target prediction
entropy, information maximisation, SND) and the oracle (target val accuracy). For each adaptation method
with several configurations in a sweep (e.g. `adaptation.weight=0.1,0.3,1`), and once over all of the
sweep's configurations, this picks the configuration with the best mean score over the seeds they all ran
(`stats.choose`) per rule and reports its mean test metric next to the oracle's pick (DomainBed's lesson: the
rule moves results as much as the method).
"""

from __future__ import annotations

import math

import pandas as pd

from transferlab.report.stats import choose, on_seeds


def _picks(group: pd.DataFrame) -> list[tuple[str, bool, str, list, str]]:
    """`(rule, needs target labels, picked method label, the seeds it was chosen on, their note)` for each rule."""
    rules = {}
    for sel in group.selection:
        for name, rule in sel.items():
            rules.setdefault(name, (rule["better"], rule["needs_target_labels"]))
    out = []
    for name, (better, needs_labels) in rules.items():
        scores = group.assign(score=[s[name]["value"] for s in group.selection]).dropna(subset=["score"])
        if scores.empty:
            continue
        by_method = {m: dict(zip(g.seed, g.score, strict=True)) for m, g in scores.groupby("method")}
        try:  # means over the seeds every configuration has: a failed seed must not win a choice
            pick, seeds = choose(by_method, higher=better == "higher")
        except ValueError:  # no seed in common: nothing to compare on
            continue
        out.append((name, needs_labels, pick, seeds, on_seeds(by_method, seeds)))
    return out


def _test(group: pd.DataFrame, method: str, seeds: list) -> float:
    """The mean test metric of `method` over `seeds` (those its choice compared)."""
    g = group[(group.method == method) & group.seed.isin(seeds)]
    return float(g.metric.astype(float).mean()) if len(g) else math.nan


def selection_md(runs: pd.DataFrame) -> str:
    """The report section (empty when no group has two configurations with selection scores)."""
    ok = runs[(runs.status == "ok") & runs.metric.notna()]
    if "selection" not in ok or ok.selection.isna().all():
        return ""
    ok = ok[ok.selection.notna()]
    groups = [(str(a), g) for a, g in ok.groupby(ok.adaptation.fillna("none"))] + [("all configurations", ok)]
    lines = []
    for name, group in groups:
        for size, g in group.groupby(group.train_size, dropna=False):
            if g.method.nunique() < 2:
                continue
            picks = _picks(g)
            oracle = next((pick for rule, _, pick, _, _ in picks if rule == "oracle"), None)
            for rule, needs_labels, pick, seeds, note in picks:
                acc = _test(g, pick, seeds)  # the pick and the oracle's pick on the same seeds
                lost = _test(g, oracle, seeds) - acc if oracle is not None else math.nan
                lines.append(
                    f"| {name} | {size:g} | {rule}{' (target labels)' if needs_labels else ''} | {pick}{note} | "
                    f"{acc:.3f} | {lost:+.3f} |".replace("+0.000", "0.000")
                )
    if not lines:
        return ""
    head = [
        "## Label-free model selection",
        "",
        "Per method (and over all configurations), the configuration whose mean score is best by each rule over "
        "the seeds every configuration ran (`(on seeds ...)` where that left some out), its mean test metric over "
        "those seeds, and what it loses against the oracle's pick (target val accuracy, which needs target "
        "labels) on the same seeds. Scores: `selection` in results.json.",
        "",
        "| method | train size | rule | picks | test metric of the pick | lost vs oracle |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + lines) + "\n"
