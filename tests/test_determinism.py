"""`fill_uninitialized_memory`: with `trainer.deterministic=true`, whether torch fills new tensors with NaN first.

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
