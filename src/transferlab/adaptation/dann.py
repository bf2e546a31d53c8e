"""DANN (Ganin et al., JMLR 2016): domain-adversarial training through a gradient-reversal layer.

A discriminator D learns to tell source from target features; the backbone receives -λ times its
gradient, so it learns features D can't separate:

    L_dann = BCE(D(GRL_λ(f_s)), 1) + BCE(D(GRL_λ(f_t)), 0)   (averaged over the 2B samples)

λ follows λ(p) = 2 / (1 + exp(-γ p)) - 1 over training progress p, set by the `GRLSchedule`
callback that this module hands to the Trainer through `callbacks()`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferlab.adaptation.base import AdaptationLoss
from transferlab.adaptation.discriminator import DomainDiscriminator, domain_accuracy
from transferlab.adaptation.grl import GradientReversal


def domain_labels(n_s: int, n_t: int, like: torch.Tensor) -> torch.Tensor:
    """1 for the `n_s` source samples, 0 for the `n_t` target samples; `(n_s + n_t,)` float."""
    return torch.cat([torch.ones(n_s, device=like.device), torch.zeros(n_t, device=like.device)])


class DANN(AdaptationLoss):
    """Domain-adversarial loss on features with its own discriminator.

    Args:
        num_features: backbone feature width F.
        num_classes: number of classes (unused; part of the adaptation constructor contract).
        weight: trade-off of the domain loss against the classification loss.
        hidden: discriminator hidden width.
        gamma: steepness γ of the λ schedule.
        max_coeff: λ at the end of training.

    Shape:
        f_s `(B_s, F)`, f_t `(B_t, F)` -> scalar loss.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int = 0,
        weight: float = 1.0,
        hidden: int = 1024,
        gamma: float = 10.0,
        max_coeff: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight, self.gamma, self.max_coeff = weight, gamma, max_coeff
        self.grl = GradientReversal()
        self.discriminator = DomainDiscriminator(num_features, hidden)

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor | None = None,
        logits_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        d = self.discriminator(self.grl(torch.cat([f_s, f_t])))  # (B_s + B_t,) logits
        is_source = domain_labels(len(f_s), len(f_t), d)
        loss = F.binary_cross_entropy_with_logits(d.float(), is_source)
        return self.weight * loss, {"dann_loss": loss.detach(), "domain_acc": domain_accuracy(d, is_source)}

    def callbacks(self) -> list:
        from transferlab.adaptation.grl_schedule import GRLSchedule

        return [GRLSchedule(self.grl, gamma=self.gamma, max_coeff=self.max_coeff)]
