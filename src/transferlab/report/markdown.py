"""Write report.md (table, winners, crossings, failures, plot links) and report.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from transferlab.report.selection import selection_md
from transferlab.report.stats import ci_note, crossings, winners


def _num(v, fmt: str = "{:.3f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _unset(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _size(per_class, total, fraction=None) -> str:
    """The configured training-set size and its number of examples: "10/class (100)", "fraction 0.1 (360)"
    (`data.train_fraction`), "all/class (2750)"."""
    if _unset(per_class) and not _unset(fraction):
        return f"fraction {fraction:g} ({_num(total, '{:.0f}')})"
    per = "all" if _unset(per_class) else f"{per_class:g}"
    return f"{per}/class ({_num(total, '{:.0f}')})"


def _params(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _ci(r) -> str:
    if r["n"] == 1:
        return " (1 seed: no CI)"
    return "" if math.isnan(r["ci95"]) else f" ± {r['ci95']:.3f}"


def table_md(table: pd.DataFrame, metric: str) -> str:
    also = [c for c in table.columns if c.startswith("test/")]
    spread = "(1 seed: no CI)" if ci_note(table) == "1 seed: no CI" else "± 95 % CI"
    head = (
        f"| method | BN policy | train size | seeds ok | {metric} mean {spread} | "
        f"{metric.replace('test/', 'val/', 1)} | "
        f"{' | '.join(also + [''])}trainable params | time/run (s) |\n|{'---|' * (8 + len(also))}"
    )
    lines = [head]
    for r in table.to_dict("records"):
        ci = "" if spread.startswith("(1 seed") else _ci(r)
        failed = f" (+{r['failed']} failed)" if r["failed"] else ""
        lines.append(
            f"| {r['method']} | {r.get('norm', 'n/a')} | "
            f"{_size(r['train_per_class'], r['train_size'], r.get('train_fraction'))} | {r['n']}{failed} "
            f"| {_num(r['mean'])}{ci} | {_num(r['val_acc'])} | {''.join(_num(r[c]) + ' | ' for c in also)}"
            f"{_params(r['trainable'])} | {_num(r['time_s'], '{:.1f}')} |"
        )
    return "\n".join(lines)


def _verdict(w: dict) -> str:
    size, ci = _size(w["train_per_class"], w["train_size"], w.get("train_fraction")), "" if w["n"] < 2 else _ci(w)
    lead = f"{w['method']} ({w['mean']:.3f}{ci})"
    if w["verdict"] == "alone":
        return f"- {size}: {lead}, the only method measured"
    ahead = f"ahead of {w['runner_up']} by {w['margin']:.3f}"
    if w["verdict"] == "clear":
        return f"- {size}: **{w['method']}** ({w['mean']:.3f}{ci}), {ahead} (the 95 % intervals do not overlap)"
    if w["verdict"] == "no_ci":
        return f"- {size}: no winner declared (1 seed: no CI): {lead} has the highest mean, {ahead}"
    within = ", ".join(w["overlapping"])
    return f"- {size}: no clear winner: {lead} has the highest mean, {ahead}, within the 95 % intervals of {within}"


def findings_md(table: pd.DataFrame) -> str:
    lines = ["## Winner per training-set size", ""]
    lines += [
        "A method is declared the winner only when its 95 % interval overlaps no other method's "
        "(one seed gives no interval, so no winner).",
        "",
    ]
    lines += [_verdict(w) for w in winners(table)]
    cross = crossings(table)
    lines += ["", "## Where the curves cross", ""]
    if not cross:
        lines.append("- No crossings: the ranking of the methods is the same at every size measured.")
    for c in cross:
        lo, hi = c["between"]
        leader = f"**{c['leader']}**" if c["clear"] else c["leader"]
        at = (
            f"(through a tie of the means at ≈ {c['at']:.0f})"
            if c.get("tie")
            else f"(≈ {c['at']:.0f}, log-linear interpolation of the means)"
        )
        lines.append(
            f"- {leader} overtakes {c['other']} between {lo:g} and {hi:g} training examples {at}"
            + ("" if c["clear"] else "; the 95 % intervals do not separate them at both ends: within the seed noise")
        )
    return "\n".join(lines)


def _spread(table: pd.DataFrame) -> str:
    note = ci_note(table)
    if note == "1 seed: no CI":
        return "one seed per configuration, so means only (1 seed: no CI) and no winner declared"
    return "mean ± 95 % confidence interval (Student t over seeds)" + (
        "" if note.startswith("95 % CI over") else '; rows with one seed say "1 seed: no CI"'
    )


def failures_md(runs: pd.DataFrame) -> str:
    failed = runs[runs.status != "ok"]
    if failed.empty:
        return ""
    lines = ["## Failed jobs (re-run the same sweep command to retry only these)", ""]
    lines += [f"- `{r.run_dir}`: {r.error or r.status}" for r in failed.itertuples()]
    return "\n".join(lines) + "\n"


def write(runs: pd.DataFrame, table: pd.DataFrame, plots: dict[str, Path], out_dir: Path, source: str) -> Path:
    """Write `report.md` and `report.csv` into `out_dir`; return the path of report.md."""
    metric = runs.metric_name.dropna().iloc[0] if runs.metric_name.notna().any() else "test/acc"
    table.to_csv(out_dir / "report.csv", index=False)
    ok = int((runs.status == "ok").sum())
    licensed = runs.dropna(subset=["backbone"]).drop_duplicates("backbone")
    backbones = (
        ", ".join(
            sorted(f"{b} (licence {lic})" for b, lic in zip(licensed.backbone, licensed["license"], strict=False))
        )
        or "n/a"
    )
    seeds = ", ".join(str(s) for s in sorted(runs.seed.dropna().unique()))
    text = [
        f"# Transfer strategies compared: {metric} vs training-set size",
        "",
        f"Source: `{source}`: {len(runs)} jobs ({ok} ok, {len(runs) - ok} failed); task `{runs.data.iloc[0]}`, "
        f"backbone {backbones}, seeds {seeds}. Target metric **{metric}**; {_spread(table)}. "
        "Regenerate with `python -m transferlab.report <sweep dir>`.",
        "",
        *(f"![{name}]({p.name})" for name, p in plots.items()),
        "",
        table_md(table, metric),
        "",
        findings_md(table),
        "",
        selection_md(runs),
        failures_md(runs),
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(text).rstrip() + "\n")
    return path
