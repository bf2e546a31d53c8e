"""The bottleneck adapter layer (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP")."""

from __future__ import annotations

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """`x + up(act(down(x)))` with `up` zero-initialised, so a fresh adapter is the identity.

    Args:
        dim: feature size in and out.
        bottleneck: inner size (the adapter has `2 * dim * bottleneck + dim + bottleneck` weights).

    Shape:
        input `(..., dim)` -> output `(..., dim)`.
    """

    def __init__(self, dim: int, bottleneck: int = 64) -> None:
        super().__init__()
        self.down, self.act, self.up = nn.Linear(dim, bottleneck), nn.GELU(), nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))  # (..., dim)


class Adapted(nn.Module):
    """A sub-layer's output projection followed by an adapter: `adapter(base(x))`.

    Placed on the projection that ends a sub-layer (attention output, FFN output), the adapter acts
    before the residual sum and layer norm, where Houlsby et al. insert it.
    """

    def __init__(self, base: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.adapter(self.base(x, *args, **kwargs))
