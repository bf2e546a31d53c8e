"""Domain discriminator shared by the adversarial methods (DANN, CDAN, domain mixup)."""

from __future__ import annotations

import torch
from torch import nn


class DomainDiscriminator(nn.Module):
    """Two hidden layers (Linear-BN-ReLU-Dropout) then one logit: "is this the source domain?".

    Returns logits, never probabilities, so the loss is `binary_cross_entropy_with_logits`
    (safe under autocast; tllib's sigmoid + BCE is not).

    Args:
        in_features: input width (features, or the CDAN multilinear map).
        hidden: hidden width.
        dropout: dropout after each hidden layer.

    Shape:
        `(B, in_features)` -> `(B,)` logits.
    """

    def __init__(self, in_features: int, hidden: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        if not isinstance(hidden, int) or not 1 <= hidden <= 65536:
            from transferlab.errors import ConfigError

            raise ConfigError(f"adaptation.hidden={hidden!r} must be a discriminator width in [1, 65536] (e.g. 1024).")
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # (B,)


def domain_accuracy(logits: torch.Tensor, is_source: torch.Tensor) -> torch.Tensor:
    """Share of samples whose domain the discriminator gets right (logit > 0 means source)."""
    return ((logits > 0).float() == (is_source > 0.5).float()).float().mean().detach()
