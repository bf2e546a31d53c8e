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


def linear_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1,
                  final: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
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
