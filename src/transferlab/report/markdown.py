"""Write report.md (table, winners, crossings, failures, plot links) and report.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from transferlab.report.selection import selection_md
from transferlab.report.stats import crossings, winners


def _num(v, fmt: str = "{:.3f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _size(per_class, total) -> str:
    per = "all" if per_class is None or (isinstance(per_class, float) and math.isnan(per_class)) else f"{per_class:g}"
    return f"{per}/class ({_num(total, '{:.0f}')})"


def _params(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def table_md(table: pd.DataFrame, metric: str) -> str:
    also = [c for c in table.columns if c.startswith("test/")]
    head = (
        f"| method | BN policy | train size | seeds ok | {metric} mean ± 95 % CI | "
        f"{metric.replace('test/', 'val/', 1)} | "
        f"{' | '.join(also + [''])}trainable params | time/run (s) |\n|{'---|' * (8 + len(also))}"
    )
    lines = [head]
    for r in table.to_dict("records"):
        ci = "" if math.isnan(r["ci95"]) else f" ± {r['ci95']:.3f}"
        failed = f" (+{r['failed']} failed)" if r["failed"] else ""
        lines.append(
            f"| {r['method']} | {r.get('norm', 'n/a')} | "
            f"{_size(r['train_per_class'], r['train_size'])} | {r['n']}{failed} "
            f"| {_num(r['mean'])}{ci} | {_num(r['val_acc'])} | {''.join(_num(r[c]) + ' | ' for c in also)}"
            f"{_params(r['trainable'])} | {_num(r['time_s'], '{:.1f}')} |"
        )
    return "\n".join(lines)


def findings_md(table: pd.DataFrame) -> str:
    lines = ["## Winner per training-set size", ""]
    for w in winners(table):
        verdict = ""
        if w["runner_up"] is not None:
            verdict = f", ahead of {w['runner_up']} by {w['margin']:.3f}" + (
                "" if w["clear"] else " (within the 95 % intervals: not a clear win)"
            )
        ci = "" if math.isnan(w["ci95"]) else f" ± {w['ci95']:.3f}"
        lines.append(
            f"- {_size(w['train_per_class'], w['train_size'])}: **{w['method']}** ({w['mean']:.3f}{ci}){verdict}"
        )
    cross = crossings(table)
    lines += ["", "## Where the curves cross", ""]
    if not cross:
        lines.append("- No crossings: the ranking of the methods is the same at every size measured.")
    for c in cross:
        lo, hi = c["between"]
        lines.append(
            f"- **{c['leader']}** overtakes {c['other']} between {lo:g} and {hi:g} training examples "
            f"(≈ {c['at']:.0f}, log-linear interpolation of the means)"
        )
    return "\n".join(lines)


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
        f"backbone {backbones}, seeds {seeds}. Target metric **{metric}**; mean ± 95 % confidence interval "
        "(Student t over seeds). Regenerate with `python -m transferlab.report <sweep dir>`.",
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
