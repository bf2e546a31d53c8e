"""The study scripts under docs/results: each job counted once."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _load_script(name: str, rel: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path: Path, result: dict) -> None:
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(result))


def _da_result(seed: int, acc: float, weight: float = 1.0) -> dict:
    sel = {"source_val_acc": {"better": "higher", "value": acc}, "oracle": {"better": "higher", "value": acc}}
    return {
        "status": "ok",
        "adaptation": "dann",
        "seed": seed,
        "norm": {"policy": "frozen"},
        "time_s": 1.0,
        "config": {"seed": seed, "adaptation": {"weight": weight}},
        "adaptation_params": {"weight": weight},
        "selection": sel,
        "metrics": {"test/target_acc": acc, "test/source_acc": 0.9},
    }


def _job_with_an_archived_run(root: Path, seed: int, acc: float) -> None:
    """A job re-run in its dir (`rundir.guard` moved the earlier run to `replaced/1/`)."""
    _write(root / f"seed={seed}", _da_result(seed, acc))
    _write(root / f"seed={seed}" / "replaced" / "1", _da_result(seed, 0.0))


def test_da_scripts_do_not_count_runs_archived_under_replaced(tmp_path: Path):
    for seed, acc in enumerate((0.6, 0.7)):
        _job_with_an_archived_run(tmp_path / "study", seed, acc)
        _job_with_an_archived_run(tmp_path / "ref" / "framework", seed, acc)
    tab = _load_script("tabulate_da", "docs/results/tabulate_da.py")
    assert "| dann [norm=frozen] | 65.0 ± 63.5 (n=2) |" in tab.main([str(tmp_path / "study")])
    choose = _load_script("choose_stats", "docs/results/da_running_stats/choose.py")
    assert [len(rs) for rs in choose.load([str(tmp_path / "study")]).values()] == [2]
    ref = _load_script("da_reference_tabulate", "docs/results/da_reference/tabulate.py")
    assert sorted(r["metrics"]["test/target_acc"] for r in ref._framework_runs(tmp_path / "ref")) == [0.6, 0.7]
