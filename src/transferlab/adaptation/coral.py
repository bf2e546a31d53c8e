"""Deep CORAL (Sun & Saenko, ECCV-W 2016): match second-order statistics of source and target features.

L_coral = ‖C_s - C_t‖_F² / (4 d²), C the unbiased feature covariance of each batch.
"""

from __future__ import annotations

import torch

from transferlab.adaptation.base import AdaptationLoss


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance of `(N, d)` samples -> `(d, d)`."""
    x = x - x.mean(0, keepdim=True)
    return x.T @ x / (len(x) - 1)


def coral_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """‖cov(f_s) - cov(f_t)‖_F² / (4 d²) for `(N, d)`, `(M, d)` features; scalar."""
    d = f_s.shape[1]
    diff = covariance(f_s.float()) - covariance(f_t.float())
    return diff.pow(2).sum() / (4 * d * d)


class CORAL(AdaptationLoss):
    """Deep CORAL loss on backbone features (no discriminator).

    Args:
        num_features, num_classes: part of the adaptation constructor contract (unused).
        weight: trade-off of the CORAL loss (its raw scale is ~1/d² small: expect large weights).

    Shape:
        f_s `(B_s, F)`, f_t `(B_t, F)` -> scalar loss.
    """

    def __init__(self, num_features: int = 0, num_classes: int = 0, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None) -> tuple[torch.Tensor, dict]:
        loss = coral_loss(f_s, f_t)
        return self.weight * loss, {"coral": loss.detach()}
