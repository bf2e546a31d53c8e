"""`python -m transferlab.report <multirun dir>` (console script `transferlab-report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transferlab.errors import TransferlabError


def build_report(sweep_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Aggregate every results.json under `sweep_dir` into report.md, report.csv and PNG plots.

    Args:
        sweep_dir: a multirun dir (searched recursively for results.json).
        out_dir: where to write; default `sweep_dir`.

    Returns:
        The path of report.md.
    """
    from transferlab.report import collect, markdown, plots, stats

    runs = collect.load_runs(sweep_dir)
    out = Path(out_dir or sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = stats.aggregate(runs)
    metric = runs.metric_name.iloc[0]
    figures = {}
    if (table.n > 0).any():
        figures = {
            "learning curves": plots.learning_curves(table, metric, out / "metric_vs_size.png"),
            "metric vs trainable params": plots.metric_vs_params(table, metric, out / "metric_vs_params.png"),
            "time per run": plots.time_per_run(table, out / "time_per_run.png"),
        }
    return markdown.write(runs, table, figures, out, source=str(sweep_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transferlab-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="multirun dir holding the jobs' results.json")
    parser.add_argument("-o", "--out", type=Path, default=None, help="output dir (default: the sweep dir)")
    args = parser.parse_args(argv)
    try:
        path = build_report(args.sweep_dir, args.out)
    except TransferlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path.read_text())
    print(f"written: {path} (+ report.csv, PNG plots)", file=sys.stderr)
    return 0
