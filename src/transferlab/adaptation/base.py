"""The adaptation-method contract: a loss on source and target features, with declared needs.

`adaptation=<method>` builds a subclass with `(num_features, num_classes)` once the head is known.
The run, the feature cache and the compatibility rules read the class attributes below (declared
here with their defaults, overridden by methods that differ), never guess them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class AdaptationLoss(nn.Module):
    """Base of feature-level domain-adaptation methods.

    Declared capabilities:
        needs_target: training batches carry unlabelled target inputs (False: AdaBN, which sees the
            target only after training).
        needs_logits: the loss conditions on class predictions (CDAN), so it needs a trained head.
        reestimates_bn: batch-norm statistics are re-estimated on the target after training (AdaBN).
        bn_layers: which BN layers a re-estimation covers, "batch_stat" or "all".

    Shape:
        f_s `(B_s, F)`, f_t `(B_t, F)`, optional logits `(B, K)` -> (scalar loss, dict of logged values).
    """

    needs_target: ClassVar[bool] = True
    needs_logits: ClassVar[bool] = False
    reestimates_bn: ClassVar[bool] = False
    bn_layers: str = "batch_stat"

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor | None = None,
        logits_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def callbacks(self) -> list:
        """Lightning callbacks the method needs (e.g. a gradient-reversal schedule)."""
        return []
