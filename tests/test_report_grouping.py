"""The report keeps apart what the sweep keeps apart: sizes set by fraction, equal numbers, ties in the curves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from transferlab.report import build_report
from transferlab.report.collect import load_runs
from transferlab.report.stats import aggregate, crossings, winners


def write_run(root: Path, strategy: str, seed: int, acc: float, *, fraction=None, per_class=None, lr=1e-3) -> Path:
    """A results.json of a digits job sized by `data.train_fraction` or `data.train_per_class`."""
    run_dir = root / f"{strategy},f={fraction},k={per_class},lr={lr!r},seed={seed}"
    run_dir.mkdir(parents=True)
    size = 10 * per_class if per_class is not None else round(720 * (fraction or 1))
    cfg = {
        "seed": seed,
        "paths": {"output_dir": str(run_dir)},
        "strategy": {"_target_": f"transferlab.strategies.{strategy}.X", "lr": lr},
        "data": {
            "_target_": "transferlab.data.images.ArrayImageData",
            "train_per_class": per_class,
            "train_fraction": fraction,
            "seed": seed,
        },
    }
    result = {
        "status": "ok",
        "strategy": strategy,
        "adaptation": "none",
        "data": "digits",
        "seed": seed,
        "train_per_class": per_class,
        "train_size": size,
        "metrics": {"test/acc": acc, "val/acc": acc},
        "params": {"trainable": 1000, "total": 5000},
        "time_s": 1.0,
        "backbone": {"name": "b"},
        "config": cfg,
    }
    (run_dir / "results.json").write_text(json.dumps(result))
    return run_dir


def test_a_fraction_sweep_keeps_one_row_per_fraction(tmp_path: Path):
    """fractions 0.1 and 0.5 x 3 seeds: two rows of 3 seeds (72 and 360 examples), not one of 6."""
    for fraction, base in ((0.1, 0.5), (0.5, 0.8)):
        for seed in range(3):
            write_run(tmp_path, "full", seed, base + seed / 100, fraction=fraction)
            write_run(tmp_path, "partial", seed, base + 0.1 - fraction / 2 + seed / 100, fraction=fraction)
    table = aggregate(load_runs(tmp_path))
    full = table[table.method == "full"]
    assert full.train_fraction.tolist() == [0.1, 0.5] and full.train_size.tolist() == [72, 360]
    assert full.n.tolist() == [3, 3] and full["mean"].tolist() == pytest.approx([0.51, 0.81])
    assert [(w["train_size"], w["method"]) for w in winners(table)] == [(72, "partial"), (360, "full")]
    (cross,) = crossings(table)
    assert (cross["leader"], cross["between"]) == ("full", (72.0, 360.0))
    text = build_report(tmp_path).read_text()
    assert "| full | train | fraction 0.1 (72) | 3 |" in text and "| full | train | fraction 0.5 (360) | 3 |" in text
    assert "- fraction 0.5 (360): **full**" in text
    assert "**full** overtakes partial between 72 and 360 training examples" in text


def test_sizes_by_fraction_and_per_class_stay_apart_even_when_equal(tmp_path: Path):
    """10/class and a fraction that selects the same 100 examples are two configurations (two rows, two winner
    lines); crossings count the method once per size, over all its seeds there."""
    for seed in range(2):
        write_run(tmp_path, "full", seed, 0.60 + seed / 100, per_class=10)
        write_run(tmp_path, "full", seed, 0.64 + seed / 100, fraction=100 / 720)
        write_run(tmp_path, "partial", seed, 0.70 + seed / 100, per_class=10)
        write_run(tmp_path, "full", seed, 0.90 + seed / 100, per_class=64)
        write_run(tmp_path, "partial", seed, 0.80 + seed / 100, per_class=64)
    table = aggregate(load_runs(tmp_path))
    assert len(table) == 5 and set(table.n) == {2}
    at_100 = [w for w in winners(table) if w["train_size"] == 100]
    assert sorted(w["method"] for w in at_100) == ["full", "partial"]  # one per configured size
    (cross,) = crossings(table)  # full at 100: (0.605 + 0.645) / 2 = 0.625 against partial's 0.705
    assert cross["leader"] == "full" and cross["between"] == (100.0, 640.0)
    assert cross["at"] == pytest.approx(100 * 6.4 ** (0.08 / 0.18))


def _table(curves: dict[str, list[float]], sizes=(10, 20, 40)) -> pd.DataFrame:
    rows = [
        {"method": m, "train_per_class": s, "train_size": 10 * s, "n": 3, "mean": v, "ci95": 0.001}
        for m, means in curves.items()
        for s, v in zip(sizes, means, strict=True)
    ]
    return pd.DataFrame(rows)


def test_a_crossing_through_an_exact_tie_is_reported_once_at_the_tie():
    (cross,) = crossings(_table({"a": [0.5, 0.6, 0.8], "b": [0.6, 0.6, 0.7]}))  # a - b: -0.1, 0, +0.1
    assert cross["leader"] == "a" and cross["other"] == "b"
    assert cross["between"] == (100.0, 400.0) and cross["at"] == pytest.approx(200.0) and cross["tie"]
    assert cross["clear"]


def test_a_touch_without_a_change_of_ranking_is_no_crossing():
    assert crossings(_table({"a": [0.5, 0.6, 0.5], "b": [0.6, 0.6, 0.6]})) == []  # -, 0, -
    assert crossings(_table({"a": [0.6, 0.7, 0.8], "b": [0.6, 0.6, 0.6]})) == []  # starts tied: no change seen


def test_several_ties_in_a_row_are_one_crossing():
    table = _table({"a": [0.5, 0.6, 0.6, 0.9], "b": [0.6, 0.6, 0.6, 0.7]}, sizes=(10, 20, 40, 80))
    (cross,) = crossings(table)
    assert cross["leader"] == "a" and cross["between"] == (100.0, 800.0)
    assert cross["at"] == pytest.approx((200 * 400) ** 0.5)


def test_a_float_setting_and_the_equal_int_are_one_arm(tmp_path: Path):
    """lr=1 (an override) and lr=1.0 (a YAML default) are one job for the sweep, so one arm of 3 seeds."""
    for seed in range(3):
        write_run(tmp_path / "old", "full", seed, 0.8, per_class=10, lr=1.0)
        write_run(tmp_path / "new", "full", seed, 0.8, per_class=10, lr=1)
        write_run(tmp_path, "full", seed, 0.7, per_class=10, lr=0.1)
    table = aggregate(load_runs(tmp_path))
    assert dict(zip(table.method, table.n, strict=True)) == {"full lr=0.1": 3, "full lr=1": 3}


def test_different_settings_never_share_a_label(tmp_path: Path):
    """Two learning rates that print alike at 6 significant digits are two arms, labelled apart."""
    for seed in range(2):
        write_run(tmp_path, "full", seed, 0.8, per_class=10, lr=0.1234567)
        write_run(tmp_path, "full", seed, 0.7, per_class=10, lr=0.1234568)
    table = aggregate(load_runs(tmp_path))
    assert sorted(table.method) == ["full lr=0.1234567", "full lr=0.1234568"] and set(table.n) == {2}


def test_the_report_names_a_crossing_through_a_tie():
    from transferlab.report.markdown import findings_md

    text = findings_md(_table({"a": [0.5, 0.6, 0.8], "b": [0.6, 0.6, 0.7]}))
    assert "**a** overtakes b between 100 and 400 training examples (through a tie of the means at ≈ 200)" in text
    assert "No crossings" not in text
