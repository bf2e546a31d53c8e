"""Zero-shot classification: no training; the head is built from the class names.

Encoders: cosine similarity of the text embedding to embeddings of label descriptions (the
sentence-embedding recipe of Reimers & Gurevych 2019, "Sentence-BERT"). Causal LMs: each label is
scored as the next token after a prompt (the LM's own logit for the label's first token).
The run is evaluated and recorded like a trained one (`trains = False`: run() skips fitting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.base import Strategy


class ZeroShot(Strategy):
    """Set the head from label descriptions / label tokens and freeze everything.

    Args:
        label_template: encoder label description(s) with a `{label}` field; with a list, each class
            embedding is the mean over the templates (prompt ensembling, as in CLIP).
        prompt_template: causal-LM input template with a `{text}` field; the next token is the label.
        labels: words naming the classes in class order; null = the data's class names.
        scale: logit scale of the encoder's cosine similarities (sets the loss, not the accuracy).
        norm: batch-norm policy (`transferlab.model.norm`); with no training only `adabn` acts.
    """

    kinds = ("text", "causal_lm")
    trains = False

    def __init__(
        self,
        label_template: str | list[str] = "This review is {label}.",
        prompt_template: str = "Review: {text}\nIs this review positive or negative? Answer:",
        labels: list[str] | None = None,
        scale: float = 20.0,
        norm: NormPolicy = "frozen",
    ) -> None:
        super().__init__(norm=norm)
        templates = [label_template] if isinstance(label_template, str) else list(label_template)
        if not templates or any("{label}" not in t for t in templates) or "{text}" not in prompt_template:
            raise ConfigError(
                "strategy.label_template needs a {label} field and strategy.prompt_template a {text} field."
            )
        self.templates, self.prompt_template = templates, prompt_template
        self.labels, self.scale = (list(labels) if labels else None), scale

    def apply(self, backbone, head: nn.Module, classes: list[str] | None = None):
        self.check(backbone)
        names = self.labels or classes
        if not names:
            raise ConfigError("strategy=zero_shot needs class names (from the data) or strategy.labels.")
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(
                "strategy=zero_shot classifies (data=reviews, text_files ...); it has nothing to do on "
                "instruction data: evaluate the untrained model with trainer.max_epochs=0 instead."
            )
        linear = linears[-1]
        if len(names) != linear.out_features:
            raise ConfigError(f"strategy.labels has {len(names)} names but the data has {linear.out_features} classes.")
        backbone.requires_grad_(False).eval()
        head.requires_grad_(False)
        with torch.no_grad():
            if backbone.info.kind == "causal_lm":
                backbone.template = self.prompt_template
                weight = backbone.label_token_weights(names)  # (K, H)
            else:
                weight = torch.stack(
                    [  # (K, H): mean of the normalised description embeddings per class
                        F.normalize(
                            backbone(backbone.tokenize([t.format(label=n) for t in self.templates])), dim=-1
                        ).mean(0)
                        for n in names
                    ]
                )
                weight = self.scale * F.normalize(weight, dim=-1)
            linear.weight.copy_(weight)
            linear.bias.zero_()
        return backbone

    def trainable_groups(self, groups):
        return []

    def param_groups(self, backbone, head) -> list[dict]:
        return []  # nothing trains
