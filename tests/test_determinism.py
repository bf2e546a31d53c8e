"""`fill_uninitialized_memory` (with `trainer.deterministic=true`, whether torch fills new tensors with NaN first),
and the Trainer's determinism flags, which the run sets from the config before the Trainer exists.

The fill is a debugging aid (an op reading memory it did not write would then give NaN, the same every time); it
costs 5-7 % of a CPU training step (BENCHMARKS.md P1). The choice is recorded, applied per run, and gives the same
results: full fine-tuning (every layer's activations and gradients) compared digit for digit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import run_config

ARGS = ["strategy=full", "logger=none", "callbacks.checkpoint=null", "trainer.enable_progress_bar=false"]


def test_fill_uninitialized_memory_is_applied_recorded_and_changes_no_result(tmp_path: Path):
    runs = {}
    for fill in (True, False):
        res = run_config([*ARGS, f"fill_uninitialized_memory={str(fill).lower()}"], tmp_path / str(fill))
        assert res["status"] == "ok"
        assert res["determinism"] == {"deterministic": True, "fill_uninitialized_memory": fill}
        assert torch.utils.deterministic.fill_uninitialized_memory is fill  # set for this run (process-wide)
        runs[fill] = res["metrics"]
    assert runs[True] == runs[False]  # exactly: no op reads memory it did not write


def test_the_trainers_determinism_flags_hold_before_the_trainer_exists():
    """The feature cache fills and the shift diagnostics measure before Lightning's Trainer sets its flags: the run
    sets them from the config at build time, for every job of a warm worker (not the previous job's)."""
    import torch
    from omegaconf import OmegaConf

    from transferlab.run.build import _determinism

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        for det, bench, expect in (
            (True, None, (True, False)),
            (False, True, (False, True)),
            (True, None, (True, False)),
            (None, True, (False, True)),  # null: a fresh process's value, not the previous job's
            (False, None, (False, False)),
        ):
            _determinism(OmegaConf.create({"trainer": {"deterministic": det, "benchmark": bench}}))
            assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == expect
        _determinism(OmegaConf.create({"trainer": {"deterministic": "warn"}}))
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        _determinism(OmegaConf.create({"trainer": {"deterministic": None}}))
        assert (
            not torch.are_deterministic_algorithms_enabled()
            and not torch.is_deterministic_algorithms_warn_only_enabled()
        )
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
