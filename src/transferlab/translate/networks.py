"""CycleGAN building blocks sized for small images (Zhu et al. 2017, Appendix 7.2), few channels.

Generator: c7s1-k, two stride-2 downsamplings, residual blocks, two upsamplings, c7s1-C + tanh,
instance norm and reflection padding. Discriminator: a 70x70-style PatchGAN scaled to 32 px (two
stride-2 convs and two stride-1 convs: one real/fake logit per ~14-px patch). Images live in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + conv-IN-ReLU-conv-IN(x), reflection padded.

    Shape:
        `(B, C, H, W)` -> same.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet-style translator: `(B, C, S, S)` in [-1, 1] -> same shape in [-1, 1].

    Args:
        channels: image channels C (in and out).
        ngf: filters of the first layer (doubled at each downsampling).
        n_blocks: residual blocks at 1/4 resolution.

    Shape:
        `(B, C, S, S)` -> `(B, C, S, S)`, S divisible by 4.
    """

    def __init__(self, channels: int = 1, ngf: int = 16, n_blocks: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, ngf, 7),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):  # S -> S/2 -> S/4
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):  # S/4 -> S/2 -> S
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, S, S)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a grid of real/fake logits, one per overlapping patch (LSGAN targets 1 / 0).

    Args:
        channels: image channels C.
        ndf: filters of the first layer.

    Shape:
        `(B, C, S, S)` -> `(B, 1, S/4 - 2, S/4 - 2)` raw scores (no sigmoid).
    """

    def __init__(self, channels: int = 1, ndf: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, stride=2, padding=1),
            nn.InstanceNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 3, padding=1),
            nn.InstanceNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, 1, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
