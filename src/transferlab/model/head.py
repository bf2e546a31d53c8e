"""The new task head: an optional bottleneck (the space domain-adaptation losses align), then the classifier.

    features (B, F) -> [Linear(F, W) - BatchNorm1d(W) - ReLU] -> Dropout -> Linear(W or F, K) -> logits (B, K)

The bottleneck is the architecture the domain-adaptation literature uses on top of a backbone (tllib's
`ImageClassifier`, bottleneck width 256; DANN/CDAN/MDD): the alignment loss acts on its output, so it
also works when the backbone is frozen (`strategy=feature_extraction`) and its features are cached.
Without a bottleneck the head is `Dropout -> Linear`, with the same state-dict keys as before.
"""

from __future__ import annotations

import torch
from torch import nn

from transferlab.errors import ConfigError


class Head(nn.Sequential):
    """Optional Linear-BN-ReLU bottleneck, then dropout and a linear classifier.

    Args:
        num_features: backbone feature width F.
        num_classes: K.
        dropout: dropout before the classifier; null/0 = none.
        bottleneck: bottleneck width W; null/0 = no bottleneck (the classifier reads the features).

    Shape:
        `(B, F)` -> `(B, K)`; `embed`: `(B, F)` -> `(B, W)` (or `(B, F)` without a bottleneck).
    """

    def __init__(self, num_features: int, num_classes: int, dropout: float = 0.0, bottleneck: int | None = None):
        if bottleneck is not None and bottleneck < 0:
            raise ConfigError(f"head.bottleneck={bottleneck} must be a width >= 1 (e.g. 256), or 0/null for none.")
        width = bottleneck or num_features
        layers = [nn.Linear(num_features, width), nn.BatchNorm1d(width), nn.ReLU()] if bottleneck else []
        super().__init__(*layers, nn.Dropout(dropout or 0.0), nn.Linear(width, num_classes))
        self.n_embed = len(layers)
        self.out_features = width  # what `embed` returns: the space an adaptation loss aligns

    @property
    def has_bottleneck(self) -> bool:
        return self.n_embed > 0

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The bottleneck's output `(B, W)` (the features themselves without a bottleneck)."""
        for layer in list(self)[: self.n_embed]:
            features = layer(features)
        return features

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits `(B, K)` from `embed`'s output."""
        for layer in list(self)[self.n_embed :]:
            z = layer(z)
        return z
