"""Feature extraction: the pretrained backbone is frozen (and kept in eval mode); a new head trains."""

from transferlab.strategies.base import Strategy


class FeatureExtraction(Strategy):
    """Freeze every backbone parameter; only the new head is trained at `lr`."""

    backbone_always_frozen = True  # the backbone's features never change: they can be cached

    def trainable_groups(self, groups):
        return []
