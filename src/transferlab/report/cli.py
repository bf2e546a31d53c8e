"""`python -m transferlab.report <multirun dir>` (console script `transferlab-report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transferlab.errors import TransferlabError


def make_report(sweep_dir: Path | str, out_dir: Path | str | None = None):
    """Aggregate every results.json under `sweep_dir`: report.md, report.csv and PNG plots in `out_dir`.

    Returns:
        a `transferlab.report.trackers.Report` (runs, table, figures, path of report.md, metric).
    """
    from transferlab.report import collect, markdown, plots, stats
    from transferlab.report.trackers import Report

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
    path = markdown.write(runs, table, figures, out, source=str(sweep_dir))
    return Report(runs, table, figures, path, metric)


def build_report(sweep_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Aggregate every results.json under `sweep_dir` into report.md, report.csv and PNG plots.

    Args:
        sweep_dir: a multirun dir (searched recursively for results.json).
        out_dir: where to write; default `sweep_dir`.

    Returns:
        The path of report.md.
    """
    return make_report(sweep_dir, out_dir).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transferlab-report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="multirun dir holding the jobs' results.json")
    parser.add_argument("-o", "--out", type=Path, default=None, help="output dir (default: the sweep dir)")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the table and the plots to the sweep's W&B group, as a run of job_type 'report' "
        "(offline without an API key: it prints the `wandb sync` command)",
    )
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        default=None,
        metavar="URI",
        help="also log the report files as artefacts of a run 'report' in the sweep's MLflow store "
        "(default: sqlite:///<sweep dir>/mlflow.db)",
    )
    args = parser.parse_args(argv)
    try:
        report = make_report(args.sweep_dir, args.out)
        told = []
        if args.wandb or args.mlflow is not None:
            from transferlab.report import trackers

            told += [trackers.to_wandb(report, args.sweep_dir)] if args.wandb else []
            told += [trackers.to_mlflow(report, args.sweep_dir, args.mlflow)] if args.mlflow is not None else []
    except TransferlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.path.read_text())
    print(f"written: {report.path} (+ report.csv, PNG plots)", file=sys.stderr)
    for line in told:
        print(line, file=sys.stderr)
    return 0
