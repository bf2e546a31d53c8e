"""Test-time augmentation: average the class probabilities of N deterministic views of each input.

Views are the identity, then small translations (±`shift` pixels along each axis), then zooms
(scale factors), taken in that order until `n_views`; optional horizontal flips. Deterministic,
so `test/..._acc_tta` is reproducible. Returns log-probabilities (valid logits for argmax / CE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transferlab.errors import ConfigError


def affine_view(x: torch.Tensor, dx: float, dy: float, scale: float) -> torch.Tensor:
    """Translate `(B, C, H, W)` by (dx, dy) pixels and zoom by `scale`, edges padded by replication."""
    h, w = x.shape[-2:]
    theta = torch.tensor([[1 / scale, 0, -2 * dx / w], [0, 1 / scale, -2 * dy / h]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class TTA:
    """`tta(model, inputs) -> (B, K)` log of the mean softmax over the views.

    Args:
        n_views: number of views (1 = the identity only).
        shift: translation in pixels of the shifted views.
        scales: zoom factors of the zoomed views.
        flip: add horizontally flipped copies of every view (not for digits or text).
    """

    def __init__(
        self, n_views: int = 5, shift: float = 2.0, scales: tuple[float, ...] = (0.9, 1.1), flip: bool = False
    ) -> None:
        if n_views < 1:
            raise ConfigError(f"tta.n_views={n_views} must be >= 1.")
        s = float(shift)
        candidates = [(0.0, 0.0, 1.0), (s, 0.0, 1.0), (-s, 0.0, 1.0), (0.0, s, 1.0), (0.0, -s, 1.0)]
        candidates += [(0.0, 0.0, float(z)) for z in scales]
        if n_views > len(candidates):
            raise ConfigError(
                f"tta.n_views={n_views} but only {len(candidates)} views are defined "
                f"(identity, 4 shifts, {len(scales)} scales); lower n_views or add tta.scales."
            )
        self.views, self.flip = candidates[:n_views], flip

    @torch.no_grad()
    def __call__(self, model, inputs: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(inputs) or inputs.dim() != 4:
            raise ConfigError("tta works on image batches (B, C, H, W); use tta=none for text or other inputs.")
        probs = 0.0
        for dx, dy, scale in self.views:
            x = inputs if (dx, dy, scale) == (0.0, 0.0, 1.0) else affine_view(inputs, dx, dy, scale)
            probs = probs + torch.softmax(model(x).float(), 1)
            if self.flip:
                probs = probs + torch.softmax(model(x.flip(-1)).float(), 1)
        n = len(self.views) * (2 if self.flip else 1)
        return torch.log(probs / n)  # (B, K)
