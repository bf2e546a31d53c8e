"""The Backbone contract shared by every backbone builder.

A backbone is an `nn.Module` that maps inputs to features `(B, num_features)`, lists its
parameters as ordered layer groups (input -> output) for freezing and per-group learning rates,
and carries metadata: where its weights came from, their licence and the preprocessing it expects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """What inputs the backbone expects.

    Args:
        kind: "image" or "text".
        mean, std: per-channel normalisation (images).
        input_size: (C, H, W) the weights were trained at (images).
        in_chans: channels the stem takes (1 = grayscale stem adapted from RGB weights).
    """

    kind: str = "image"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    input_size: tuple[int, int, int] = (3, 224, 224)
    in_chans: int = 3


@dataclass(frozen=True)
class BackboneInfo:
    """Metadata recorded in every run result."""

    name: str
    source: str  # "package:<dist>==<ver>", "hub:<repo id>", "file:<path>", "random-init"
    license: str | None
    kind: str = "image"  # "image" | "text" | "causal_lm"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerGroup:
    """A named, ordered slice of a backbone's parameters (e.g. the stem, one stage, one block)."""

    name: str
    params: list[tuple[str, nn.Parameter]]

    def parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.params]

    def numel(self) -> int:
        return sum(p.numel() for _, p in self.params)


class Backbone(nn.Module):
    """Base for backbones: subclasses set `num_features`, `info`, `preprocessing`, `forward`.

    Capabilities are declared here with their "can't" default; a backbone that has one overrides it,
    and the run, planner, feature cache and export ask these names (never `getattr` on a guess):

    - `kind` (class): the inputs it takes, "image" | "text" | "causal_lm"; checked against the strategy
      and data before anything is built (`transferlab.config.rules`).
    - `split(n_groups)`: `(prefix, suffix)` for the feature cache's frozen prefix, or None.
    - `has_lm_head` (class): `lm(input_ids, attention_mask, labels)` exists (a causal LM).
    - `saves_pretrained` (class): exports as a transformers model folder (`save_pretrained` + tokenizer).
    - `pooling`: how token features become one vector ("mean" | "cls"), for encoders; None otherwise.
    - `tokenizer`, `dtype`, `quantization`: text models' tokenizer, weight dtype name, 4-bit settings.
    """

    kind: ClassVar[str] = "image"
    saves_pretrained: ClassVar[bool] = False
    has_lm_head: ClassVar[bool] = False  # `lm(...)`: a language-modelling head (instruction tuning needs it)
    num_features: int
    info: BackboneInfo
    preprocessing: Preprocessing
    pooling: str | None = None
    tokenizer: Any = None
    dtype: str = "float32"
    quantization: dict | None = None

    def split(self, n_groups: int) -> tuple[nn.Module, nn.Module] | None:
        """`(prefix, suffix)` with `suffix(prefix(x)) == self(x)`, cut after `n_groups` layer groups; None: can't."""
        return None

    def layer_groups(self) -> list[LayerGroup]:  # pragma: no cover - contract
        """Parameter groups ordered input -> output, covering every parameter exactly once."""
        raise NotImplementedError


def set_frozen_eval(module: nn.Module) -> None:
    """Put every sub-tree whose parameters are all frozen into eval mode.

    Frozen batch-norm layers then keep their pretrained statistics and frozen dropout is off, so a
    frozen part computes the same features every epoch. Derived from `requires_grad` alone, so it
    stays right while a progressive schedule unfreezes groups.
    """
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    for child in module.children():
        set_frozen_eval(child)
