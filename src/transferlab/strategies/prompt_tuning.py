"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning") through peft."""

from __future__ import annotations

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.peft_base import PeftStrategy


class PromptTuning(PeftStrategy):
    """Trainable soft-prompt embeddings prepended to the input; the model stays frozen.

    Args:
        num_virtual_tokens: soft-prompt length.
        init_text: initialise the prompt from the embeddings of this text (the paper's
            "text-initialised" option); null = random init.
        lr: head learning rate; peft_lr: soft-prompt learning rate (prompts want a large one).
        norm: see `PeftStrategy`.
    """

    def __init__(
        self,
        num_virtual_tokens: int = 20,
        init_text: str | None = None,
        lr: float = 1e-3,
        peft_lr: float | None = 3e-2,
        norm: NormPolicy = "frozen",
    ) -> None:
        super().__init__(lr=lr, peft_lr=peft_lr, norm=norm)
        if num_virtual_tokens < 1:
            raise ConfigError(f"strategy.num_virtual_tokens={num_virtual_tokens} must be >= 1.")
        self.n, self.init_text = num_virtual_tokens, init_text

    def peft_config(self, backbone):
        from peft import PromptTuningConfig, PromptTuningInit

        if self.init_text is None:
            return PromptTuningConfig(task_type=backbone.peft_task_type, num_virtual_tokens=self.n)
        return PromptTuningConfig(
            task_type=backbone.peft_task_type,
            num_virtual_tokens=self.n,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=self.init_text,
            tokenizer_name_or_path=backbone.location,
        )
