"""DAN (Long et al., ICML 2015): multi-kernel maximum mean discrepancy between source and target features.

MMD²(S, T) = E k(s, s') + E k(t, t') - 2 E k(s, t) with k a sum of Gaussian kernels
exp(-‖x - y‖² / (2 σ_i²)), σ_i² = base · mul^i centred on the batch's mean squared distance.
The quadratic (biased, V-statistic) estimate uses all pairs; the linear-time estimate (Gretton et
al. 2012) uses disjoint quadruples (s_2i, s_2i+1, t_2i, t_2i+1) and is unbiased.
"""

from __future__ import annotations

import torch

from transferlab.adaptation.base import AdaptationLoss


def _bandwidths(sq_dists: torch.Tensor, num_kernels: int, mul: float) -> list[torch.Tensor]:
    base = sq_dists.detach().mean().clamp_min(1e-8)  # centre the kernel family on the data's scale
    return [base * mul ** (i - num_kernels // 2) for i in range(num_kernels)]


def mmd2(
    x: torch.Tensor, y: torch.Tensor, num_kernels: int = 5, mul: float = 2.0, linear: bool = False
) -> torch.Tensor:
    """Multi-kernel Gaussian MMD² between samples `x` `(N, F)` and `y` `(M, F)`; scalar.

    `linear=True` needs N and M >= 2 and uses the first 2·min(N, M)//2 of each.
    """
    x, y = x.float(), y.float()
    if linear:
        n = min(len(x), len(y)) // 2 * 2
        s1, s2, t1, t2 = x[0:n:2], x[1:n:2], y[0:n:2], y[1:n:2]  # (n/2, F) each
        pairs = torch.stack([(s1 - s2), (t1 - t2), (s1 - t2), (s2 - t1)]).pow(2).sum(-1)  # (4, n/2)
        total = 0.0
        for bw in _bandwidths(pairs, num_kernels, mul):
            k = torch.exp(-pairs / (2 * bw))
            total = total + (k[0] + k[1] - k[2] - k[3]).mean()
        return total
    z = torch.cat([x, y])  # (N + M, F)
    d2 = torch.cdist(z, z).pow(2)
    k = sum(torch.exp(-d2 / (2 * bw)) for bw in _bandwidths(d2, num_kernels, mul))
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class MMD(AdaptationLoss):
    """DAN's MK-MMD loss on backbone features (no discriminator).

    Args:
        num_features, num_classes: part of the adaptation constructor contract (unused).
        weight: trade-off of the MMD loss.
        num_kernels: number of Gaussian kernels.
        kernel_mul: ratio between consecutive bandwidths.
        linear: use the linear-time estimate (O(B) instead of O(B²)).

    Shape:
        f_s `(B_s, F)`, f_t `(B_t, F)` -> scalar loss.
    """

    def __init__(
        self,
        num_features: int = 0,
        num_classes: int = 0,
        weight: float = 1.0,
        num_kernels: int = 5,
        kernel_mul: float = 2.0,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.weight, self.num_kernels, self.kernel_mul, self.linear = weight, num_kernels, kernel_mul, linear

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s=None, logits_t=None) -> tuple[torch.Tensor, dict]:
        loss = mmd2(f_s, f_t, self.num_kernels, self.kernel_mul, self.linear)
        return self.weight * loss, {"mmd": loss.detach()}
