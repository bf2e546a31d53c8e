"""The gradient-reversal schedule: λ(p) = max · (2 / (1 + exp(-γ p)) - 1), p = training progress.

p = `trainer.global_step / trainer.estimated_stepping_batches`, recomputed at every step from the
trainer's own counters: a run resumed from a checkpoint continues the same schedule (no hidden
step counter, unlike tllib's `WarmStartGradientReverseLayer`).
"""

from __future__ import annotations

import math

import lightning as L

from transferlab.adaptation.grl import GradientReversal, grl_lambda
from transferlab.errors import ConfigError


class GRLSchedule(L.Callback):
    """Set a `GradientReversal` layer's λ before every training step and log `train/grl_lambda`.

    Args:
        grl: the layer to drive (owned by the adaptation module).
        gamma: steepness γ (10 in the DANN paper).
        max_coeff: λ reached at the end of training.
    """

    def __init__(self, grl: GradientReversal, gamma: float = 10.0, max_coeff: float = 1.0) -> None:
        self.grl, self.gamma, self.max_coeff = grl, gamma, max_coeff

    @staticmethod
    def progress(trainer: L.Trainer) -> float:
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            raise ConfigError(
                "the gradient-reversal schedule needs a finite training length: set trainer.max_steps "
                "or trainer.max_epochs (not both -1)."
            )
        return min(trainer.global_step / total, 1.0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.progress(trainer)  # fail early on an unbounded run

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        value = grl_lambda(self.progress(trainer), self.gamma, self.max_coeff)
        self.grl.set_coeff(value)
        pl_module.log("train/grl_lambda", value, on_step=True, on_epoch=False, batch_size=1)
