"""Feature extraction: the pretrained backbone is frozen (and kept in eval mode); a new head trains."""

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.base import Strategy

# `lr: auto` per backbone kind, each chosen on validation (docs/results/head_rate.md)
AUTO_LR = {"image": 3e-3, "text": 3e-2, "causal_lm": 3e-2}
WHY = {
    "image": "an image backbone, chosen on val (EfficientNet-Lite0 on digits)",
    "text": "a text backbone, chosen on val (MiniLM on the reviews task)",
    "causal_lm": "a causal LM, not measured: the text value",
}


class FeatureExtraction(Strategy):
    """Freeze every backbone parameter; only the new head is trained at `lr`.

    Args:
        lr: the head's learning rate, or "auto": 3e-3 on an image backbone (EfficientNet-Lite0 on digits, 5 rates x
            3 sizes x 3 seeds, and the default job), 3e-2 on a text or causal LM (MiniLM on the reviews task); each
            chosen on validation, docs/results/head_rate.md. results.json `strategy_choices` records it.
        norm: batch-norm policy (`transferlab.model.norm`); the frozen backbone stays in eval mode.
    """

    backbone_always_frozen = True  # the backbone's features never change: they can be cached

    def __init__(
        self,
        lr: float | str = "auto",
        backbone_lr_mult: float = 0.1,
        lr_decay: float = 1.0,
        norm: NormPolicy = "frozen",
    ) -> None:
        if isinstance(lr, str) and lr != "auto":
            raise ConfigError(f"strategy.lr={lr!r} must be 'auto' or a rate > 0.")
        rate = AUTO_LR["text"] if lr == "auto" else lr  # "auto" resolves in apply, on the backbone
        super().__init__(lr=rate, backbone_lr_mult=backbone_lr_mult, lr_decay=lr_decay, norm=norm)
        self.lr_setting = lr

    def trainable_groups(self, groups):
        return []

    def apply(self, backbone, head, classes=None):
        out = super().apply(backbone, head, classes)
        kind = backbone.info.kind
        if self.lr_setting == "auto":
            self.lr = AUTO_LR.get(kind, AUTO_LR["text"])
            why = f"auto: {WHY.get(kind, WHY['causal_lm'])} (docs/results/head_rate.md)"
        else:
            why = "set"
        self._choices = {"lr": {"setting": self.lr_setting, "used": self.lr, "why": why}}
        return out
