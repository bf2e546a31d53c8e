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

from transferlab.report.stats import choose


def _picks(group: pd.DataFrame) -> list[tuple[str, bool, str, float]]:
    """`(rule, needs target labels, picked method label, its mean test metric)` for each rule."""
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
            pick, _ = choose(by_method, higher=better == "higher")
        except ValueError:  # no seed in common: nothing to compare on
            continue
        out.append((name, needs_labels, pick, float(group[group.method == pick].metric.astype(float).mean())))
    return out


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
            oracle = next((acc for rule, _, _, acc in picks if rule == "oracle"), math.nan)
            for rule, needs_labels, pick, acc in picks:
                lines.append(
                    f"| {name} | {size:g} | {rule}{' (target labels)' if needs_labels else ''} | {pick} | "
                    f"{acc:.3f} | {oracle - acc:+.3f} |".replace("+0.000", "0.000")
                )
    if not lines:
        return ""
    head = [
        "## Label-free model selection",
        "",
        "Per method (and over all configurations), the configuration whose mean score over seeds is best by each "
        "rule, its mean test metric, and what it loses against the oracle (target val accuracy, which needs "
        "target labels). Scores: `selection` in results.json.",
        "",
        "| method | train size | rule | picks | test metric of the pick | lost vs oracle |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + lines) + "\n"
