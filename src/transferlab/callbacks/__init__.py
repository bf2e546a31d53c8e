"""Cross-cutting Lightning callbacks (NaN guard, resume state, step timer).

Schedules that belong to one method live with it: progressive unfreezing in
`transferlab.strategies.unfreeze`, the gradient-reversal schedule in `transferlab.adaptation.grl_schedule`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ReportsResult(Protocol):
    """A callback that adds a section to results.json after testing (e.g. `timing`, `nan_guard`)."""

    def result_section(self) -> dict: ...
