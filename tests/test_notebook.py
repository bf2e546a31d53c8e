"""notebooks/compare_strategies.ipynb runs headless on a small results fixture and shows the report."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from conftest import ROOT
from nbclient import NotebookClient
from test_report import MEANS, write_result


def test_compare_strategies_notebook(tmp_path: Path, monkeypatch):
    sweep = tmp_path / "sweep"
    for strategy, curve in MEANS.items():
        for per_class, mean in curve.items():
            for seed, noise in enumerate((-0.01, 0.0, 0.01)):
                write_result(sweep, strategy, per_class, seed, mean + noise)
    monkeypatch.setenv("TRANSFERLAB_SWEEP_DIR", str(sweep))
    monkeypatch.setenv("TRANSFERLAB_REPORT_DIR", str(tmp_path / "report"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / "compare_strategies.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "**full** overtakes feature_extraction" in text
    assert "feature_extraction" in text and "0.92" in text  # the table: full at 32/class
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert (tmp_path / "report" / "report.md").is_file() and os.path.getsize(tmp_path / "report" / "metric_vs_size.png")
