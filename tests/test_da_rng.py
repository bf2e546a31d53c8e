"""`da.rng=isolated`: a DA run's source side draws exactly what source-only draws, so a weight-0 control is
source-only to the last digit even where training is random (LeNet's dropout in the classic digits recipe)."""

from __future__ import annotations

import torch
from conftest import run_config

from transferlab.model.da_rng import own_stream

CLASSIC = [
    "experiment=digits_da_reference",
    "logger=none",
    "callbacks.checkpoint=null",
    "trainer.enable_progress_bar=false",
    "trainer.max_steps=8",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "da.forward=separate",
]
CONTROL = ["adaptation=dann", "adaptation.weight=0", "da.running_stats=source"]  # no gradient, no BN statistics


def _test_metrics(result: dict) -> dict:
    return {k: v for k, v in result["metrics"].items() if k.startswith("test/")}


def test_weight_zero_control_is_source_only_with_dropout(tmp_path):
    source_only = run_config([*CLASSIC, "adaptation=none"], tmp_path / "none", fast=False)
    control = run_config([*CLASSIC, *CONTROL], tmp_path / "control", fast=False)
    assert control["da"]["rng"] == "isolated"
    assert _test_metrics(control) == _test_metrics(source_only)  # to the last digit
    assert control["metrics"]["val/target_acc"] == source_only["metrics"]["val/target_acc"]


def test_own_stream_leaves_the_runs_stream_and_is_reproducible():
    torch.manual_seed(3)
    with own_stream(True, 3, step=5, part=1, device=torch.device("cpu")):
        first = torch.rand(4)
    after = torch.rand(4)  # the run's stream, as if the block had not drawn
    torch.manual_seed(3)
    assert torch.equal(torch.rand(4), after)
    with own_stream(True, 3, step=5, part=1, device=torch.device("cpu")):
        assert torch.equal(torch.rand(4), first)  # the same (seed, step, part): the same draws
    with own_stream(True, 3, step=5, part=0, device=torch.device("cpu")):
        assert not torch.equal(torch.rand(4), first)  # another part of the step: another stream
    torch.manual_seed(3)
    with own_stream(False, 3, step=5, part=1, device=torch.device("cpu")):  # shared: the block draws on the run's
        torch.rand(4)
    assert not torch.equal(torch.rand(4), after)
