"""Progressive unfreezing (ULMFiT, Howard & Ruder 2018): start with the head, unfreeze top-down.

The schedule is a pure function of the epoch (or step), so it is the same after a resume; the
number of unfrozen groups is also kept in the callback's checkpoint state so that the optimizer is
rebuilt with the same parameter groups before its state is loaded.
"""

from __future__ import annotations

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.base import Strategy


class Progressive(Strategy):
    """Head first; one more layer group from the top joins every `unfreeze_every` epochs/steps.

    Args:
        unfreeze_every: period of the schedule, in `unit`s (>= 1).
        unfreeze_at: explicit epochs/steps at which one more group joins (overrides `unfreeze_every`).
        unit: "epoch" or "step".
        max_groups: stop after this many groups (null = all).
        warmup_steps: a newly joined group's LR ramps linearly from 0 over this many steps (on top of
            the run's `scheduler`, whose multiplier every joined group follows like the head).
        lr, backbone_lr_mult, lr_decay, norm: see `Strategy`; group k from the top gets
            `lr * backbone_lr_mult * lr_decay**k`.
    """

    def __init__(
        self,
        unfreeze_every: int = 1,
        unfreeze_at: list[int] | None = None,
        unit: str = "epoch",
        max_groups: int | None = None,
        warmup_steps: int = 0,
        lr: float = 1e-3,
        backbone_lr_mult: float = 0.1,
        lr_decay: float = 1.0,
        norm: NormPolicy = "frozen",
    ) -> None:
        super().__init__(lr=lr, backbone_lr_mult=backbone_lr_mult, lr_decay=lr_decay, norm=norm)
        if unit not in {"epoch", "step"}:
            raise ConfigError(f"strategy.unit='{unit}' must be 'epoch' or 'step'.")
        if unfreeze_at is None and unfreeze_every < 1:
            raise ConfigError(f"strategy.unfreeze_every={unfreeze_every} must be >= 1 ({unit}s between unfreezing).")
        if unfreeze_at is not None and (sorted(unfreeze_at) != list(unfreeze_at) or min(unfreeze_at, default=1) < 1):
            raise ConfigError(f"strategy.unfreeze_at={list(unfreeze_at)} must be increasing {unit} numbers >= 1.")
        if max_groups is not None and max_groups < 1:
            raise ConfigError(f"strategy.max_groups={max_groups} must be >= 1 (or null for all groups).")
        if warmup_steps < 0:
            raise ConfigError(f"strategy.warmup_steps={warmup_steps} must be >= 0.")
        self.every, self.at, self.unit = unfreeze_every, list(unfreeze_at) if unfreeze_at else None, unit
        self.max_groups, self.warmup_steps = max_groups, warmup_steps
        self._unfrozen = 0  # groups from the top currently trainable (advanced by the schedule's callback)
        self.n_groups = 0

    @property
    def unfrozen(self) -> int:
        """Layer groups from the top that are trainable now."""
        return self._unfrozen

    def join_next(self) -> int:
        """One more group joins; returns its depth from the top (0 = the group next to the head)."""
        if self._unfrozen >= self.n_groups:
            raise RuntimeError(f"all {self.n_groups} scheduled layer groups are already unfrozen")
        self._unfrozen += 1
        return self._unfrozen - 1

    def restore(self, unfrozen: int) -> None:
        """Resume: the number of groups that had joined when the checkpoint was written."""
        self._unfrozen = unfrozen

    def check(self, backbone) -> None:
        super().check(backbone)
        n = len(backbone.layer_groups())
        if self.max_groups is not None and self.max_groups > n:
            raise ConfigError(f"strategy.max_groups={self.max_groups} but the backbone has only {n} layer groups.")
        if self.at is not None and len(self.at) > n:
            raise ConfigError(
                f"strategy.unfreeze_at lists {len(self.at)} points but the backbone has only {n} layer groups."
            )
        self.n_groups = min(n, self.max_groups or n)

    def target(self, t: int) -> int:
        """Number of groups (from the top) unfrozen at epoch/step `t`."""
        k = sum(t >= a for a in self.at) if self.at is not None else t // self.every
        return min(k, self.n_groups)

    def unfrozen_at_most(self, last_epoch: int | None, last_step: int | None) -> int | None:
        last = last_epoch if self.unit == "epoch" else last_step
        return None if last is None else self.target(last)

    def trainable_groups(self, groups):
        return groups[len(groups) - self.unfrozen :] if self.unfrozen else []

    def may_train_groups(self, backbone):
        groups = backbone.layer_groups()
        return groups[len(groups) - self.n_groups :] if self.n_groups else []

    def param_groups(self, backbone, head) -> list[dict]:
        """Head first, then unfrozen groups in joining order (top-down), as `add_param_group` appends.

        Rebuilding in this order after a resume matches the saved optimizer state group by group.
        """
        groups = [{"name": "head", "params": [p for p in head.parameters() if p.requires_grad], "lr": self.lr}]
        layer_groups = backbone.layer_groups()
        for k in range(self.unfrozen):
            g = layer_groups[len(layer_groups) - 1 - k]
            groups.append({"name": f"backbone.{g.name}", "params": g.parameters(), "lr": self.group_lr(k)})
        return groups

    def callbacks(self) -> list:
        from transferlab.strategies.unfreeze import ProgressiveUnfreezing

        return [ProgressiveUnfreezing(self)]
