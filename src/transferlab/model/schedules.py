"""Learning-rate schedules stepped every optimizer step (TransferModule calls `fn(optimizer, total_steps)`)."""

from __future__ import annotations

import torch

from transferlab.errors import ConfigError


def linear_warmup_factor(step: int, total_steps: int, warmup: float = 0.1, final: float = 0.0) -> float:
    """LR multiplier at `step`: linear 0 -> 1 over the first `warmup` share of steps, then linear 1 -> `final`.

    The BERT fine-tuning recipe (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
    Transformers"): warm-up over 10 % of the steps, then linear decay to 0.
    """
    n_warm = max(1, round(warmup * total_steps)) if warmup > 0 else 0
    if step < n_warm:
        return (step + 1) / n_warm
    rest = max(1, total_steps - n_warm)
    return final + (1.0 - final) * max(0.0, (total_steps - step) / rest)  # 1 at the peak, -> final


def linear_warmup(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1, final: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then linear decay for every parameter group (each keeps its own peak LR).

    Args:
        optimizer: the optimizer whose groups' `lr` are the peak learning rates.
        total_steps: optimizer steps in the whole run (Lightning's `estimated_stepping_batches`).
        warmup: share of `total_steps` spent warming up, in [0, 1).
        final: LR multiplier reached at the last step.
    """
    if not 0 <= warmup < 1:
        raise ConfigError(f"scheduler.warmup={warmup} must be a share of the steps in [0, 1).")
    if total_steps < 1:
        raise ConfigError(f"the schedule needs at least one training step (got total_steps={total_steps}).")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_warmup_factor(s, total_steps, warmup, final))


def inv_annealing_factor(step: int, total_steps: int, gamma: float = 10.0, power: float = 0.75) -> float:
    """LR multiplier `(1 + gamma p)^-power` at progress `p = step / total_steps`.

    The annealing of the DANN and CDAN experiments (Ganin & Lempitsky 2015, "Unsupervised Domain
    Adaptation by Backpropagation"): lr_p = lr_0 / (1 + 10 p)^0.75.
    """
    return (1.0 + gamma * step / max(1, total_steps)) ** -power


def inv_annealing(
    optimizer: torch.optim.Optimizer, total_steps: int, gamma: float = 10.0, power: float = 0.75
) -> torch.optim.lr_scheduler.LambdaLR:
    """DANN's LR annealing for every parameter group (each keeps its own initial LR).

    Args:
        optimizer: the optimizer whose groups' `lr` are the initial learning rates.
        total_steps: optimizer steps in the whole run.
        gamma, power: `lr_p = lr_0 (1 + gamma p)^-power`.
    """
    if gamma < 0 or power < 0:
        raise ConfigError(f"scheduler.gamma={gamma} and scheduler.power={power} must be >= 0.")
    if total_steps < 1:
        raise ConfigError(f"the schedule needs at least one training step (got total_steps={total_steps}).")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: inv_annealing_factor(s, total_steps, gamma, power))


# -- optimizer groups that join during training (progressive unfreezing) ------------------------------
_EXTENDABLE = {"base_lrs", "lr_lambdas", "_last_lr"}  # the per-group lists `add_group` extends
_NESTED = {"_schedulers", "_milestones"}  # SequentialLR / ChainedScheduler: their schedulers are checked in turn


def _parts(scheduler) -> list:
    """`scheduler` and the schedulers nested in it (SequentialLR, ChainedScheduler), depth first."""
    return [scheduler, *(p for s in getattr(scheduler, "_schedulers", []) for p in _parts(s))]


def why_not_extendable(scheduler, optimizer: torch.optim.Optimizer) -> str | None:
    """Why `add_group` can't extend `scheduler` to a parameter group added to `optimizer` later; None: it can.

    A scheduler's per-group state is in lists aligned with the optimizer's groups and in keys it writes into
    the groups; `add_group` extends `base_lrs`, `lr_lambdas` and `_last_lr` (LambdaLR, the schedules above,
    StepLR, CosineAnnealingLR, ...), not others (CyclicLR's `max_lrs`, OneCycleLR's `max_lr` group key,
    ReduceLROnPlateau's `min_lrs`).
    """
    n = len(optimizer.param_groups)
    known = set(optimizer.defaults) | {"params", "name", "initial_lr"}
    for part in _parts(scheduler):
        name = type(part).__name__
        if not isinstance(part, torch.optim.lr_scheduler.LRScheduler):
            return f"{name} is not a torch LRScheduler"
        lists = {k for k, v in vars(part).items() if isinstance(v, list) and len(v) == n} - _EXTENDABLE - _NESTED
        if lists:
            return f"{name} keeps per-group {', '.join(sorted(lists))}"
    keys = {k for g in optimizer.param_groups for k in g} - known
    if keys:
        return (
            f"{type(scheduler).__name__} keeps per-group settings in the optimizer's groups ({', '.join(sorted(keys))})"
        )
    return None


def add_group(scheduler, like: int, initial_lr: float) -> None:
    """Extend `scheduler` to the parameter group just appended to its optimizer.

    The new group gets the LR function of group `like` (LambdaLR's `lr_lambdas`: the same multiplier as
    that group) and `initial_lr` as its base LR; `why_not_extendable` says which schedulers this covers.
    """
    lr = scheduler.optimizer.param_groups[-1]["lr"]
    for part in _parts(scheduler):
        if hasattr(part, "base_lrs"):
            part.base_lrs.append(initial_lr)
        if hasattr(part, "lr_lambdas"):
            part.lr_lambdas.append(part.lr_lambdas[like])
        if hasattr(part, "_last_lr"):
            part._last_lr.append(lr)
