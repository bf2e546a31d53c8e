"""AdaBN (Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR-W 2017).

No loss and no extra parameters: the network trains on the source as usual, then every batch-norm
layer's running statistics are re-estimated on unlabelled target images, so each layer normalises
target activations with target statistics. The re-estimation itself is `transferlab.model.norm.reestimate`,
shared with `strategy.norm=adabn`; this module only tells the run to do it (and that no target
batches are needed while training). Training uses whatever `strategy.norm` says, so
`adaptation=adabn` next to `adaptation=none` with the same policy is the controlled comparison.

Which layers: by default those that normalised with batch statistics while training (the trainable BN
layers under `strategy.norm=train`; Li et al. fine-tune the whole network that way). Layers that
trained with fixed pretrained statistics (`norm=frozen`, frozen groups) keep them: swapping those
breaks the layers above them (measured: 10.7 % target accuracy, chance). `layers: all` re-estimates
every BN layer anyway.
"""

from __future__ import annotations

from transferlab.adaptation.base import AdaptationLoss


class AdaBN(AdaptationLoss):
    """Target-domain batch-norm statistics after training.

    Args:
        num_features, num_classes: part of the adaptation constructor contract (unused).
        layers: "batch_stat" (the BN layers that trained with batch statistics) or "all".
    """

    needs_target = False  # no target batches while training: the target is only seen by the re-estimation
    reestimates_bn = True

    def __init__(self, num_features: int = 0, num_classes: int = 0, layers: str = "batch_stat") -> None:
        super().__init__()
        if layers not in ("batch_stat", "all"):
            from transferlab.errors import ConfigError

            raise ConfigError(f"adaptation.layers='{layers}' must be 'batch_stat' or 'all'.")
        self.bn_layers = layers

    def forward(self, f_s, f_t, logits_s=None, logits_t=None):  # pragma: no cover - never called (no target batches)
        raise RuntimeError("AdaBN has no training loss; the run re-estimates BN statistics after training.")
