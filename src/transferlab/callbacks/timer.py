"""StepTimer: wall time of every training step, and when the first optimizer step happened."""

from __future__ import annotations

import statistics
import time

import lightning as L


class StepTimer(L.Callback):
    """Records per-step wall time and the first optimizer step's clock.

    A step's time runs from one batch start to the next, so it includes data loading, logging
    and every hook: what a user waits for.

    `summary()` is merged into results.json under `timing` (see transferlab.train).

    Args:
        skip: leading steps excluded from the median (warm-up: allocator, lazy init).
    """

    def __init__(self, skip: int = 2) -> None:
        self.skip = skip
        self.steps: list[float] = []
        self.first_step_unix: float | None = None
        self._t: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._t is not None:
            self.steps.append(now - self._t)
        self._t = now

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.first_step_unix is None:
            self.first_step_unix = time.time()

    def on_train_end(self, trainer, pl_module) -> None:
        if self._t is not None:
            self.steps.append(time.perf_counter() - self._t)
            self._t = None

    def result_section(self) -> dict:
        return {"timing": self.summary()}

    def summary(self) -> dict:
        timed = self.steps[self.skip :] or self.steps
        return {
            "steps": len(self.steps),
            "step_s_median": statistics.median(timed) if timed else None,
            "step_s_all": self.steps,
            "first_step_unix": self.first_step_unix,
        }
