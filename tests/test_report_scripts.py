"""The study scripts under docs/results: each job counted once, every batch-norm arm tabulated."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_script


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
    tab = load_script("tabulate_da", "docs/results/tabulate_da.py")
    assert "| dann [norm=frozen] | 65.0 ± 63.5 (n=2) |" in tab.main([str(tmp_path / "study")])
    choose = load_script("choose_stats", "docs/results/da_running_stats/choose.py")
    assert [len(rs) for rs in choose.load([str(tmp_path / "study")]).values()] == [2]
    ref = load_script("da_reference_tabulate", "docs/results/da_reference/tabulate.py")
    assert sorted(r["metrics"]["test/target_acc"] for r in ref._framework_runs(tmp_path / "ref")) == [0.6, 0.7]


def _norm_result(strategy: str, per_class, policy: str, seed: int, acc: float) -> dict:
    return {
        "status": "ok",
        "strategy": strategy,
        "train_per_class": per_class,
        "seed": seed,
        "norm": {"policy": policy},
        "metrics": {"val/acc": acc, "test/acc": acc - 0.01},
    }


def test_norm_policy_table_has_the_adabn_arm_and_may_choose_it(tmp_path: Path):
    accs = {"train": (0.50, 0.52), "frozen": (0.80, 0.82), "adabn": (0.90, 0.92)}
    for policy, per_seed in accs.items():
        for seed, acc in enumerate(per_seed):
            _write(tmp_path / f"full,{policy},10,{seed}", _norm_result("full", 10, policy, seed, acc))
            _write(tmp_path / f"full,{policy},all,{seed}", _norm_result("full", None, policy, seed, acc - 0.2))
    tab = load_script("norm_policy_tabulate", "docs/results/norm_policy/tabulate.py")
    rows = [line for line in tab.table(tmp_path).splitlines()[2:]]
    assert [r.split(" | ")[1:3] for r in rows] == [[size, p] for size in ("10", "None") for p in accs]
    assert rows[0] == "| full | 10 | train | 2 | 0.510 ± 0.127 | 0.500 ± 0.127 |  |"  # rows as before
    assert rows[2].startswith("| full | 10 | adabn | 2 | 0.910 ± 0.127 |") and rows[2].endswith("| **yes** |")


def test_norm_policy_table_without_adabn_runs_is_unchanged(tmp_path: Path):
    """The committed tables (train and frozen only): same rows, same choice."""
    for policy, acc in (("train", 0.9), ("frozen", 0.8)):
        for seed in range(2):
            _write(tmp_path / f"{policy}{seed}", _norm_result("partial", 64, policy, seed, acc + seed / 100))
    tab = load_script("norm_policy_tabulate", "docs/results/norm_policy/tabulate.py")
    assert tab.table(tmp_path).splitlines()[2:] == [
        "| partial | 64 | train | 2 | 0.905 ± 0.064 | 0.895 ± 0.064 | **yes** |",
        "| partial | 64 | frozen | 2 | 0.805 ± 0.064 | 0.795 ± 0.064 |  |",
    ]


def test_dropout_policy_tabulator_pairs_seeds_and_skips_archived_runs(tmp_path: Path, capsys, monkeypatch):
    tab = load_script("dropout_policy_tabulate", "docs/results/dropout_policy/tabulate.py")

    def result(policy: str, seed: int, val: float, active: int) -> dict:
        return {
            "status": "ok",
            "strategy": "prompt_tuning",
            "seed": seed,
            "dropout": {"policy": policy, "active": active, "layers": 19},
            "metrics": {"val/acc": val, "test/acc": val - 0.05},
        }

    for seed, (new, old) in enumerate(((0.86, 0.84), (0.90, 0.85))):
        _write(tmp_path / f"new{seed}", result("after_trainable", seed, new, 19))
        _write(tmp_path / f"old{seed}", result("frozen_subtrees", seed, old, 0))
    _write(tmp_path / "old0" / "replaced" / "1", result("frozen_subtrees", 0, 0.0, 0))  # not counted
    _write(tmp_path / "unpaired", result("frozen_subtrees", 7, 0.5, 0) | {"status": "failed"})  # not counted
    monkeypatch.setattr("sys.argv", ["tabulate.py", str(tmp_path)])
    tab.main()
    out = capsys.readouterr().out
    assert "| prompt_tuning | after_trainable | 19/19 | 2 | 88.0 ± 25.4 |" in out
    assert "| prompt_tuning | frozen_subtrees | 0/19 | 2 | 84.5 ± 6.4 |" in out
    assert "| prompt_tuning | 2 | 3.5 ± 19.1 |" in out  # paired: +2.0 and +5.0 points
