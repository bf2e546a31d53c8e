"""Gradient reversal layer (Ganin & Lempitsky 2015): identity forward, gradient times -λ backward.

The coefficient λ lives in a buffer (so it is in `state_dict`) and is set every step by
`transferlab.adaptation.grl_schedule.GRLSchedule` from `trainer.global_step`, so a resumed run continues
the same schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (coeff,) = ctx.saved_tensors
        return -coeff.to(grad.dtype) * grad, None


def grad_reverse(x: torch.Tensor, coeff: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Identity on `x` whose backward pass multiplies the gradient by `-coeff`."""
    coeff = torch.as_tensor(coeff, dtype=torch.float32, device=x.device)
    return _ReverseGrad.apply(x, coeff)


def grl_lambda(progress: float, gamma: float = 10.0, max_coeff: float = 1.0) -> float:
    """DANN's schedule λ(p) = max_coeff · (2 / (1 + exp(-γ p)) - 1), p in [0, 1] clamped."""
    p = min(max(float(progress), 0.0), 1.0)
    return max_coeff * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


class GradientReversal(nn.Module):
    """Module form of `grad_reverse` with its coefficient in a (persistent) buffer.

    Args:
        coeff: initial λ; a `GRLSchedule` callback overwrites it at every training step.

    Shape:
        any -> same shape.
    """

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("coeff", torch.tensor(float(coeff)))

    def set_coeff(self, value: float) -> None:
        self.coeff.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReverseGrad.apply(x, self.coeff)
