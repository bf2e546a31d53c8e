"""Compare runs: tables with confidence intervals, plots.

python -m transferlab.report multirun/strategies_vs_datasize/small      # or: transferlab-report <dir>
"""

from transferlab.report.cli import build_report

__all__ = ["build_report"]
