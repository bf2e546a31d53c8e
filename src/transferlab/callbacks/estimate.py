"""CostEstimate: what a run will cost, said before the work and checked against what it cost.

When training starts it prints the planned optimizer steps; after the first few steps, the estimated wall time
of the whole fit (their pace times the steps left), revised after the first epoch from its whole pace
(validation, checkpointing and logging included). At the end results.json `estimate` holds the plan, the
estimates and the actual fit time, so estimates can be checked.
"""

from __future__ import annotations

import logging
import math
import time

import lightning as L

log = logging.getLogger("transferlab")


def _clock(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class CostEstimate(L.Callback):
    """Planned steps at the start, an estimated fit time after `after` optimizer steps, estimate vs actual at the end.

    Args:
        after: optimizer steps timed before the estimate is made (the first one, which pays for warm-up, excluded).
    """

    def __init__(self, after: int = 5) -> None:
        if after < 1:
            from transferlab.errors import ConfigError

            raise ConfigError(f"callbacks.estimate.after={after} must be >= 1 (steps timed before estimating).")
        self.after = after
        self.planned: int | None = None
        self.start_step = 0
        self.estimate_s: float | None = None
        self.per_step_s: float | None = None
        self._t0: float | None = None
        self._t1: float | None = None  # after the first (warm-up) step
        self._val_s = 0.0
        self._val_n = 0
        self._val_t: float | None = None
        self._steps_per_epoch = 1
        self.actual_s: float | None = None
        self.first_estimate_s: float | None = None  # from the first steps, before the epoch revision

    def on_train_start(self, trainer, pl_module) -> None:
        total = trainer.estimated_stepping_batches
        self.planned = int(total) if math.isfinite(total) else None
        self.start_step = trainer.global_step
        self._t0 = time.perf_counter()
        per_epoch = trainer.num_training_batches
        accumulate = trainer.accumulate_grad_batches
        if math.isfinite(per_epoch):
            self._steps_per_epoch = max(1, math.ceil(per_epoch / accumulate))
        left = f"{self.planned - self.start_step} left of " if self.start_step and self.planned else ""
        log.info(
            "plan: %s%s optimizer steps (max_epochs=%s, %s batches per epoch%s)",
            left,
            self.planned if self.planned is not None else "unbounded",
            trainer.max_epochs,
            per_epoch,
            f", {accumulate} per step" if accumulate > 1 else "",
        )

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_t = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_t is not None:
            self._val_s += time.perf_counter() - self._val_t
            self._val_n += 1
            self._val_t = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.estimate_s is None or self.first_estimate_s is not None or trainer.global_step == self.start_step:
            return
        # a whole epoch has run (validation, checkpoint, logging included): revise from its pace
        done = trainer.global_step - self.start_step
        left = max(0, self.planned - trainer.global_step)
        elapsed = time.perf_counter() - self._t0
        self.first_estimate_s, self.estimate_s = self.estimate_s, elapsed + elapsed / done * left
        log.info(
            "estimate revised after one epoch: ~%s for the fit (%d of %d steps done)",
            _clock(self.estimate_s),
            done,
            self.planned - self.start_step,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = trainer.global_step - self.start_step
        if done == 1 and self._t1 is None:
            self._t1 = time.perf_counter()
        if self.estimate_s is not None or done < self.after + 1 or self._t1 is None or self.planned is None:
            return
        self._estimate(trainer)

    def _estimate(self, trainer) -> None:
        done = trainer.global_step - self.start_step
        self.per_step_s = (time.perf_counter() - self._t1 - self._val_s) / max(1, done - 1)
        left = max(0, self.planned - trainer.global_step)
        val = self._val_s / self._val_n * left / self._steps_per_epoch if self._val_n else 0.0
        self.estimate_s = time.perf_counter() - self._t0 + self.per_step_s * left + val
        log.info(
            "estimate: ~%s for the fit (%d steps at %.3f s/step, timed over steps 2-%d%s)",
            _clock(self.estimate_s),
            self.planned - self.start_step,
            self.per_step_s,
            done,
            ", validation passes included" if self._val_n else "; revised after the first epoch",
        )

    def on_train_end(self, trainer, pl_module) -> None:
        if self._t0 is not None:
            self.actual_s = time.perf_counter() - self._t0

    def result_section(self) -> dict:
        out = {"planned_steps": self.planned, "start_step": self.start_step}
        if self.estimate_s is not None:
            out |= {"seconds_per_step": round(self.per_step_s, 4), "estimated_fit_s": round(self.estimate_s, 2)}
            if self.first_estimate_s is not None:
                out["first_estimate_s"] = round(self.first_estimate_s, 2)
        else:
            out["estimated_fit_s"] = None  # fewer steps than `after` + 1: nothing to estimate from
        if self.actual_s is not None:
            out["actual_fit_s"] = round(self.actual_s, 2)
        return {"estimate": out}
