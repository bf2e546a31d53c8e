"""Compare runs: tables with confidence intervals, plots.

python -m transferlab.report multirun/strategies_vs_datasize/small      # or: transferlab-report <dir>
python -m transferlab.report <dir> --wandb --mlflow   # also to the sweep's W&B group / MLflow store (trackers.py)
"""

from transferlab.report.cli import build_report

__all__ = ["build_report"]
