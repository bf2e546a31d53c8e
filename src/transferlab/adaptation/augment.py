"""Domain-bridging augmentation: make source images look like the target domain while training.

Each transform is applied to a random subset of the batch (probability per sample): Gaussian
noise, Gaussian blur, colour jitter (brightness/contrast), grayscale, and a resolution drop
(optional central zoom, downsample to `low_res`, upsample back), e.g. MNIST's 20-px digit in a
28-px frame -> the 8x8 sensor of scikit-learn's digits. Works on normalised `(B, C, H, W)` inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.errors import ConfigError


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of `(B, C, H, W)` with std `sigma` pixels (reflect padding)."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resolution_drop(x: torch.Tensor, low_res: int, zoom: float = 1.0) -> torch.Tensor:
    """Crop the central `zoom` fraction, downsample to `low_res` (area), upsample back (bilinear)."""
    h, w = x.shape[-2:]
    if zoom < 1.0:
        ch, cw = max(1, round(h * zoom)), max(1, round(w * zoom))
        top, left = (h - ch) // 2, (w - cw) // 2
        x = x[..., top : top + ch, left : left + cw]
    x = F.interpolate(x, size=(low_res, low_res), mode="area")
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


class DomainBridge(nn.Module):
    """Random target-imitating transforms of a source batch (training only; identity in eval).

    Args:
        p_noise, noise_std: probability and std of additive Gaussian noise (normalised units).
        p_blur, blur_sigma: probability and (min, max) std in pixels of a Gaussian blur.
        p_jitter, brightness, contrast: probability and maximal shift / relative scale of jitter.
        p_gray: probability of replacing channels by their mean.
        p_lowres, low_res, zoom: probability, side length and central crop fraction of the
            resolution drop.

    Shape:
        `(B, C, H, W)` -> same.
    """

    def __init__(
        self,
        p_noise: float = 0.0,
        noise_std: float = 0.1,
        p_blur: float = 0.0,
        blur_sigma: tuple[float, float] = (0.5, 1.5),
        p_jitter: float = 0.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        p_gray: float = 0.0,
        p_lowres: float = 0.0,
        low_res: int = 8,
        zoom: float = 1.0,
    ) -> None:
        super().__init__()
        probs = dict(p_noise=p_noise, p_blur=p_blur, p_jitter=p_jitter, p_gray=p_gray, p_lowres=p_lowres)
        for name, p in probs.items():
            if not 0 <= p <= 1:
                raise ConfigError(f"augment.{name}={p} must be a probability in [0, 1].")
        if not 0 < zoom <= 1 or low_res < 1:
            raise ConfigError(f"augment.zoom={zoom} must be in (0, 1] and augment.low_res={low_res} >= 1.")
        self.probs = probs
        self.noise_std, self.blur_sigma = noise_std, tuple(blur_sigma)
        self.brightness, self.contrast, self.low_res, self.zoom = brightness, contrast, low_res, zoom

    def _where(self, p: float, x: torch.Tensor) -> torch.Tensor:
        return (torch.rand(len(x), 1, 1, 1, device=x.device) < p).to(x.dtype)  # (B, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        pr = self.probs
        if pr["p_lowres"]:
            m = self._where(pr["p_lowres"], x)
            x = m * resolution_drop(x, self.low_res, self.zoom) + (1 - m) * x
        if pr["p_blur"]:
            sigma = float(torch.empty(()).uniform_(*self.blur_sigma))
            m = self._where(pr["p_blur"], x)
            x = m * gaussian_blur(x, sigma) + (1 - m) * x
        if pr["p_jitter"]:
            m = self._where(pr["p_jitter"], x)
            shift = (torch.rand(len(x), 1, 1, 1, device=x.device) * 2 - 1) * self.brightness
            scale = 1 + (torch.rand(len(x), 1, 1, 1, device=x.device) * 2 - 1) * self.contrast
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = m * ((x - mean) * scale + mean + shift) + (1 - m) * x
        if pr["p_gray"]:
            m = self._where(pr["p_gray"], x)
            x = m * x.mean(1, keepdim=True).expand_as(x) + (1 - m) * x
        if pr["p_noise"]:
            x = x + self._where(pr["p_noise"], x) * torch.randn_like(x) * self.noise_std
        return x
