"""Source-target domain mixup (Xu et al., AAAI 2020, "Adversarial Domain Adaptation with Domain Mixup").

Features are interpolated across domains, f_mix = λ f_s + (1 - λ) f_t with λ ~ Beta(α, α) per
pair, and a domain discriminator behind a gradient-reversal layer is trained on the source (label
1), the target (0) and the mixed features (soft label λ). The soft labels give the discriminator a
continuous domain axis, and the backbone, through the reversed gradient, fills the space between
the domains instead of only confusing two clusters.

Interpolation happens on features because the adaptation hook sees features and logits (no
source labels); the mixed samples need no class labels, so no target pseudo-labels are required.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferlab.adaptation.base import AdaptationLoss
from transferlab.adaptation.dann import domain_labels
from transferlab.adaptation.discriminator import DomainDiscriminator, domain_accuracy
from transferlab.adaptation.grl import GradientReversal
from transferlab.errors import ConfigError


class DomainMixup(AdaptationLoss):
    """Adversarial loss on source, target and Beta(α, α)-mixed features with soft domain labels.

    Args:
        num_features: backbone feature width F.
        num_classes: part of the adaptation constructor contract (unused).
        alpha: Beta(α, α) concentration (α < 1 favours λ near 0 or 1, α = 1 uniform).
        weight, hidden, gamma, max_coeff: as in `DANN`.

    Shape:
        f_s `(B_s, F)`, f_t `(B_t, F)` -> scalar loss.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int = 0,
        alpha: float = 1.0,
        weight: float = 1.0,
        hidden: int = 1024,
        gamma: float = 10.0,
        max_coeff: float = 1.0,
    ) -> None:
        super().__init__()
        if alpha <= 0:
            raise ConfigError(f"adaptation.alpha={alpha} must be > 0 (the Beta(α, α) mixing concentration).")
        self.alpha, self.weight, self.gamma, self.max_coeff = alpha, weight, gamma, max_coeff
        self.grl = GradientReversal()
        self.discriminator = DomainDiscriminator(num_features, hidden)

    def mix(self, f_s: torch.Tensor, f_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair the first n = min(B_s, B_t) samples: `(n, F)` mixed features and `(n,)` λ."""
        n = min(len(f_s), len(f_t))
        concentration = torch.full((n,), float(self.alpha), device=f_s.device)
        lam = torch.distributions.Beta(concentration, concentration).sample()  # (n,)
        f_mix = lam.unsqueeze(1).to(f_s.dtype) * f_s[:n] + (1 - lam.unsqueeze(1).to(f_s.dtype)) * f_t[:n]
        return f_mix, lam

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None) -> tuple[torch.Tensor, dict]:
        f_mix, lam = self.mix(f_s, f_t)
        d = self.discriminator(self.grl(torch.cat([f_s, f_t, f_mix])))  # (B_s + B_t + n,) logits
        hard = domain_labels(len(f_s), len(f_t), d)
        loss = F.binary_cross_entropy_with_logits(d.float(), torch.cat([hard, lam]))
        acc = domain_accuracy(d[: len(hard)], hard)
        return self.weight * loss, {"mixup_loss": loss.detach(), "domain_acc": acc}

    def callbacks(self) -> list:
        from transferlab.adaptation.grl_schedule import GRLSchedule

        return [GRLSchedule(self.grl, gamma=self.gamma, max_coeff=self.max_coeff)]
