"""Full fine-tuning: every backbone parameter trains, at a low learning rate."""

from transferlab.strategies.base import Strategy


class Full(Strategy):
    """Train everything: head at `lr`, backbone at `lr * backbone_lr_mult` (default 1e-3 x 0.1 = 1e-4)."""

    def trainable_groups(self, groups):
        return groups
