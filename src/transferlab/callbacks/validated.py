"""The global step at which the run last validated, so the final val metrics describe the final model."""

from __future__ import annotations

import lightning as L


class ValidatedAt(L.Callback):
    """Records `trainer.global_step` at the end of each validation (not the sanity check).

    `trainer.callback_metrics` keeps the last validation's `val/*`: when `max_steps` ends training
    mid-epoch, that is an earlier model than the one tested. `transferlab.run.stages.validate_final`
    compares `step` with the final global step and validates again when they differ.
    """

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def validated_at(trainer) -> int | None:
    """The step of `trainer`'s last validation (None: none recorded, or no `ValidatedAt` callback)."""
    found = [c.step for c in trainer.callbacks if isinstance(c, ValidatedAt)]
    return found[0] if found else None
