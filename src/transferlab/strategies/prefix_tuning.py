"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation") through peft."""

from __future__ import annotations

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.peft_base import PeftStrategy


class PrefixTuning(PeftStrategy):
    """Trainable key/value prefixes prepended in every attention layer; the model stays frozen.

    Args:
        num_virtual_tokens: prefix length.
        prefix_projection: reparameterise the prefix through a 2-layer MLP (the paper's trick).
        encoder_hidden_size: hidden size of that MLP.
        lr, peft_lr, norm: see `PeftStrategy`.
    """

    def __init__(
        self,
        num_virtual_tokens: int = 20,
        prefix_projection: bool = False,
        encoder_hidden_size: int = 512,
        lr: float = 1e-3,
        peft_lr: float | None = None,
        norm: NormPolicy = "frozen",
    ) -> None:
        super().__init__(lr=lr, peft_lr=peft_lr, norm=norm)
        if num_virtual_tokens < 1:
            raise ConfigError(f"strategy.num_virtual_tokens={num_virtual_tokens} must be >= 1.")
        self.n, self.projection, self.hidden = num_virtual_tokens, prefix_projection, encoder_hidden_size

    def peft_config(self, backbone):
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(
            task_type=backbone.peft_task_type,
            num_virtual_tokens=self.n,
            prefix_projection=self.projection,
            encoder_hidden_size=self.hidden,
        )
