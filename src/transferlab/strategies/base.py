"""The Strategy contract.

A strategy is given the backbone and the new head; it decides what is trainable (and may wrap the
backbone, e.g. with peft), and returns optimizer parameter groups that cover every trainable
parameter exactly once and no frozen one. Each group carries its own `lr` and a `name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from transferlab.backbones.base import Backbone, LayerGroup
from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy, check_policy


@dataclass(frozen=True)
class StrategySpec:
    """What a strategy declares about itself (read by the rules, the feature cache, the export, the tests)."""

    kinds: tuple[str, ...]  # backbone kinds it can adapt
    trains: bool  # False: zero-shot
    backbone_always_frozen: bool  # its backbone features never change (cacheable whole)
    saves_adapter: bool  # writes a peft adapter after training
    mergeable: bool  # the adapter merges into the base weights (exportable as one model)


class Strategy:
    """Base class: train the head at `lr`, the trainable layer groups at `lr * backbone_lr_mult`.

    Args:
        lr: learning rate of the new head.
        backbone_lr_mult: backbone learning rate as a multiple of `lr` (the seed text's "10x
            smaller than the head" is 0.1).
        lr_decay: discriminative learning rates: layer group k counted from the top (k = 0 for
            the group next to the head) trains at `lr * backbone_lr_mult * lr_decay**k`
            (1.0 = one backbone rate; ~0.75 = layer-wise decay for transformers, LLRD).
        norm: normalisation policy for batch-norm layers, "train" | "frozen" | "adabn"
            (see `transferlab.model.norm`; every strategy takes it, one implementation).
        kinds: backbone kinds this strategy can adapt ("image", "text", "causal_lm").
    """

    kinds: ClassVar[tuple[str, ...]] = ("image", "text", "causal_lm")
    trains: ClassVar[bool] = True  # False for zero-shot
    backbone_always_frozen: ClassVar[bool] = False  # True: backbone features never change (feature cache)
    saves_adapter: ClassVar[bool] = False  # True: a peft adapter is saved after training
    mergeable: ClassVar[bool] = False  # True: the adapter merges into the base weights
    # Optional settings a strategy may carry (declared so that readers need no getattr):
    quantization: dict | None = None  # QLoRA: 4-bit loading of the backbone
    gradient_checkpointing: bool = False
    init_text: str | None = None  # prompt tuning: initialise the prompt from this text
    labels: list[str] | None = None  # zero-shot: class names to score

    @property
    def exports_adapter(self) -> bool:
        """A trained peft adapter is written after the run (so the run keeps its test outputs for the export)."""
        return self.saves_adapter and self.trains

    @classmethod
    def spec(cls) -> StrategySpec:
        """The frozen declaration of this strategy class."""
        return StrategySpec(cls.kinds, cls.trains, cls.backbone_always_frozen, cls.saves_adapter, cls.mergeable)

    def __init__(
        self, lr: float = 1e-3, backbone_lr_mult: float = 0.1, lr_decay: float = 1.0, norm: NormPolicy = "frozen"
    ) -> None:
        if isinstance(lr, (str, bool)) or lr <= 0:
            raise ConfigError(f"strategy.lr={lr!r} must be a number > 0 ('auto' is feature_extraction's only).")
        if not 0 < backbone_lr_mult <= 1:
            raise ConfigError(f"strategy.backbone_lr_mult={backbone_lr_mult} must be in (0, 1].")
        if not 0 < lr_decay <= 1:
            raise ConfigError(f"strategy.lr_decay={lr_decay} must be in (0, 1] (1 = no decay; ~0.75 for LLRD).")
        self.lr, self.backbone_lr_mult, self.lr_decay = lr, backbone_lr_mult, lr_decay
        self._choices: dict = {}  # `auto` settings as resolved in `apply`, once the backbone is known
        self.norm = check_policy(norm)

    def choices(self) -> dict:
        """What this strategy resolved for the backbone at hand (its `auto` settings), after `apply`: a
        `{setting, used, why}` per key, results.json `strategy_choices` (LoRA's dropout and peft_lr, feature
        extraction's lr; empty for most)."""
        return dict(self._choices)

    def group_lr(self, depth_from_top: int) -> float:
        """Learning rate of the backbone layer group `depth_from_top` groups below the head."""
        return self.lr * self.backbone_lr_mult * self.lr_decay**depth_from_top

    @property
    def name(self) -> str:
        return type(self).__name__

    def check(self, backbone: Backbone) -> None:
        """Raise `ConfigError` when this strategy can't adapt `backbone`."""
        if backbone.info.kind not in self.kinds:
            raise ConfigError(
                f"strategy '{self.name}' can't adapt a {backbone.info.kind} backbone "
                f"('{backbone.info.name}'); it works with {', '.join(self.kinds)} backbones."
            )

    def trainable_groups(self, groups: list[LayerGroup]) -> list[LayerGroup]:
        """The backbone layer groups this strategy trains (subclasses choose)."""
        raise NotImplementedError

    def may_train_groups(self, backbone: Backbone) -> list[LayerGroup]:
        """Every layer group of `backbone` that trains at some point of the run (a schedule may add groups later)."""
        return self.trainable_groups(backbone.layer_groups())

    def apply(self, backbone: Backbone, head: nn.Module, classes: list[str] | None = None) -> Backbone:
        """Freeze the backbone except `trainable_groups`; the head always trains.

        Args:
            backbone: the pretrained backbone (a strategy may return it wrapped, e.g. by peft).
            head: the new task head (a zero-shot strategy may set its weights).
            classes: the task's class names (for strategies that use them, e.g. zero-shot).
        """
        self.check(backbone)
        backbone.requires_grad_(False)
        for group in self.trainable_groups(backbone.layer_groups()):
            for p in group.parameters():
                p.requires_grad_(True)
        head.requires_grad_(True)
        return backbone

    def param_groups(self, backbone: Backbone, head: nn.Module) -> list[dict]:
        """One optimizer group per trainable layer group (input -> output), then the head."""
        groups = []
        layer_groups = backbone.layer_groups()
        for i, g in enumerate(layer_groups):
            params = [p for p in g.parameters() if p.requires_grad]
            if params:
                lr = self.group_lr(len(layer_groups) - 1 - i)
                groups.append({"name": f"backbone.{g.name}", "params": params, "lr": lr})
        groups.append({"name": "head", "params": [p for p in head.parameters() if p.requires_grad], "lr": self.lr})
        return groups

    def callbacks(self) -> list:
        """Lightning callbacks this strategy needs (e.g. an unfreezing schedule)."""
        return []

    def unfrozen_at_most(self, last_epoch: int | None, last_step: int | None) -> int | None:
        """For a schedule that unfreezes layer groups during the run: the most groups (from the top) it can
        have unfrozen by `last_epoch` / `last_step` (upper bounds on the run's last epoch and step; None =
        unknown); None when that can't be bounded. Strategies without a schedule: None (not asked)."""
        return None
