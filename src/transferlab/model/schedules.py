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
