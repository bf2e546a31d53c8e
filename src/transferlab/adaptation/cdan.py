"""CDAN and CDAN+E (Long et al., NeurIPS 2018): conditional adversarial domain adaptation.

The discriminator sees the multilinear map of features f and class predictions g = softmax(logits),
`f ⊗ g` (flattened outer product, F·K wide), so it aligns the joint distribution of features and
predictions. When F·K exceeds `max_product` the randomized map `(R_f f) ⊙ (R_g g) / sqrt(d)` with
fixed Gaussian R_f `(F, d)`, R_g `(K, d)` replaces it. CDAN+E weights each sample by
w = 1 + exp(-H(g)) (confident predictions count more), normalised to mean 1 per domain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferlab.adaptation.base import AdaptationLoss
from transferlab.adaptation.dann import domain_labels
from transferlab.adaptation.discriminator import DomainDiscriminator, domain_accuracy
from transferlab.adaptation.grl import GradientReversal


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of `(B, K)` probabilities -> `(B,)`."""
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(1)


class CDAN(AdaptationLoss):
    """Conditional domain-adversarial loss (multilinear conditioning, optional entropy weighting).

    Args:
        num_features: backbone feature width F.
        num_classes: number of classes K.
        entropy: CDAN+E: weight samples by 1 + exp(-entropy of the prediction).
        randomized: use the randomized multilinear map; null = only when F·K > `max_product`.
        randomized_dim: output width d of the randomized map.
        max_product: largest F·K for the exact map (4096 in the paper).
        weight, hidden, gamma, max_coeff: as in `DANN`.
        seed: seed of the fixed random matrices (kept in `state_dict` as buffers).

    Shape:
        f_s `(B, F)`, f_t `(B, F)`, logits_s `(B, K)`, logits_t `(B, K)` -> scalar loss.
    """

    needs_logits = True  # conditions on class predictions: needs a trained head

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        entropy: bool = False,
        randomized: bool | None = None,
        randomized_dim: int = 1024,
        max_product: int = 4096,
        weight: float = 1.0,
        hidden: int = 1024,
        gamma: float = 10.0,
        max_coeff: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.entropy, self.weight, self.gamma, self.max_coeff = entropy, weight, gamma, max_coeff
        self.randomized = num_features * num_classes > max_product if randomized is None else randomized
        if self.randomized:
            gen = torch.Generator().manual_seed(seed)
            self.register_buffer("rf", torch.randn(num_features, randomized_dim, generator=gen))
            self.register_buffer("rg", torch.randn(num_classes, randomized_dim, generator=gen))
            width = randomized_dim
        else:
            width = num_features * num_classes
        self.grl = GradientReversal()
        self.discriminator = DomainDiscriminator(width, hidden)

    def multilinear(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """`(B, F)`, `(B, K)` -> `(B, F·K)` outer product, or `(B, d)` randomized map."""
        if self.randomized:
            return (f @ self.rf.to(f.dtype)) * (g @ self.rg.to(g.dtype)) / self.rf.shape[1] ** 0.5
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)  # (B, K, F) -> (B, K·F)

    def forward(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        f = torch.cat([f_s, f_t])  # (2B, F)
        g = torch.softmax(torch.cat([logits_s, logits_t]).float(), 1).detach().to(f.dtype)  # (2B, K)
        d = self.discriminator(self.grl(self.multilinear(f, g)))  # (2B,) logits
        is_source = domain_labels(len(f_s), len(f_t), d)
        w = None
        if self.entropy:
            w = 1.0 + torch.exp(-entropy(g.float()))  # (2B,)
            ws, wt = w[: len(f_s)], w[len(f_s) :]
            w = torch.cat([ws / ws.mean(), wt / wt.mean()]).detach()
        loss = F.binary_cross_entropy_with_logits(d.float(), is_source, weight=w)
        return self.weight * loss, {"cdan_loss": loss.detach(), "domain_acc": domain_accuracy(d, is_source)}

    def callbacks(self) -> list:
        from transferlab.adaptation.grl_schedule import GRLSchedule

        return [GRLSchedule(self.grl, gamma=self.gamma, max_coeff=self.max_coeff)]
