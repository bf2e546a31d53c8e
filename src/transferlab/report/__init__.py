"""Compare runs: tables with confidence intervals, plots."""
