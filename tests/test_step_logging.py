"""What a training step logs: step values on the loggers' steps only (Lightning writes nothing else), epoch
figures once per epoch, and the same logged figures as logging every step (BENCHMARKS.md P1: `self.log`
costs ~0.7 ms a call on a CPU)."""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import pytest
from conftest import run_config

COMMON = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=7",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.train_per_class=30",
    "strategy=partial",
    "adaptation=none",
    "callbacks.checkpoint=null",
]


def _rows(run_dir):
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def test_step_values_are_logged_on_the_loggers_steps_and_match_logging_every_step(tmp_path, monkeypatch):
    calls = []
    log = pl.LightningModule.log

    def counted(self, name, *args, **kwargs):
        calls.append(name)
        return log(self, name, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", counted)
    every = run_config([*COMMON, "trainer.log_every_n_steps=1"], tmp_path / "every")
    n_every = calls.count("train/loss")
    calls.clear()
    third = run_config([*COMMON, "trainer.log_every_n_steps=3"], tmp_path / "third")
    # 14 steps: logged at steps 3, 6, 9, 12 (the loggers' steps) and at each epoch's last batch (7, 14)
    assert (n_every, calls.count("train/loss")) == (14, 6)
    assert calls.count("train/acc") == 2 and calls.count("val/acc") == 2  # once per epoch, not per batch
    by_step = {int(r["step"]): r for r in _rows(tmp_path / "every") if "train/loss" in r}
    logged = [r for r in _rows(tmp_path / "third") if "train/loss" in r]
    assert [int(r["step"]) for r in logged] == [2, 5, 8, 11]  # 0-based: what Lightning writes every 3 steps
    for r in logged:
        assert float(r["train/loss"]) == pytest.approx(float(by_step[int(r["step"])]["train/loss"]), abs=1e-6)
    epochs = [r for r in _rows(tmp_path / "third") if "train/acc" in r]
    assert len(epochs) == 2
    # the run's final figures (results.json) are the last step's and the epochs', as when every step logs
    for key in ("train/loss", "train/cls_loss", "train/acc", "val/acc", "val/loss", "test/acc", "test/loss"):
        assert third["metrics"][key] == pytest.approx(every["metrics"][key], abs=1e-6), key


def test_an_eval_loss_that_is_nan_stays_nan():
    """The per-epoch eval loss is a batch-size-weighted mean (torchmetrics MeanMetric): a NaN batch must make
    it NaN, as Lightning's own mean did, not be dropped with a warning (a diverged run would look finite)."""
    import torch
    from torch import nn

    from transferlab.backbones.lenet import LeNet
    from transferlab.model.module import TransferModule
    from transferlab.strategies.full import Full

    strategy = Full()
    backbone, head = LeNet(), nn.Linear(800, 3)
    module = TransferModule(strategy.apply(backbone, head), head, strategy, 3, optimizer=torch.optim.SGD).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        module.validation_step({"inputs": x, "labels": y}, 0)
        head.bias[0] = float("nan")
        module.validation_step({"inputs": x, "labels": y}, 1)
    assert module.eval_acc["val_0"].update_called
    assert torch.isnan(module.eval_loss["val_0"].compute())
