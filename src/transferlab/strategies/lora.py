"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through peft."""

from __future__ import annotations

from transferlab.errors import ConfigError
from transferlab.model.norm import NormPolicy
from transferlab.strategies.peft_base import PeftStrategy


class Lora(PeftStrategy):
    r"""Low-rank updates `W + (alpha / r) B A` on the target linear layers; the base stays frozen.

    Args:
        r: rank of the update.
        alpha: scaling numerator (`alpha / r` scales the update).
        dropout: dropout on the LoRA branch input, or "auto": 0 on an image backbone, 0.05 on a text or causal
            LM (the value of the QLoRA paper and peft's examples for small models). On a CNN the branch's input is
            every adapted 1x1 conv's whole activation map: drawing its mask took ~20 % of a LoRA step on a CPU
            (fits 1.25x longer) while validation accuracy was the same without it (the size study, 3 sizes x 3
            seeds; docs/results/strategies_vs_datasize/NOTES.md). results.json `strategy_choices` records it.
        target_modules: module names to adapt (a list; a name matches itself or a `.name` suffix), or one
            string, a regular expression the full module name must match (peft's semantics), e.g.
            `blocks\.[56]\..*conv_pw` for the top stages of an EfficientNet; null = peft's default for the
            architecture (BERT/RoBERTa `query`, `value`; Llama/Mistral/Qwen2 `q_proj`, `v_proj`; GPT-2 `c_attn`),
            or for a timm image backbone its `lora_target_modules()` (1x1 convs; ViT `qkv`). Below the first
            adapted layer the network is frozen: on timm EfficientNets/ResNets the feature cache keeps that
            prefix's outputs where they are smaller than its inputs.
        bias: "none", "all" or "lora_only" (which biases train).
        merge_check: test examples the merged model (`merge_and_unload`) is evaluated on after training and
            compared output by output with the trained model's test outputs (the first test batches holding
            at least that many); null: the whole test set. A merge is a linear identity: a batch shows a
            wrong one, and the whole set cost the size study 1.2 s a LoRA job (BENCHMARKS.md P6).
        peft_lr: the LoRA matrices' learning rate, or "auto": 3e-3 on an image backbone, 1e-3 on a text or causal
            LM, each chosen on validation (docs/results/lora_rate_rank.md: EfficientNet-Lite0 on digits, 4 rates x 3
            sizes x 3 seeds, 1e-2 collapses to chance; docs/results/text_peft.md: MiniLM, 1e-3 over 3e-3).
            results.json `strategy_choices` records it. null: `lr`.
        lr, norm: see `PeftStrategy`.
    """

    mergeable = True
    kinds = ("image", "text", "causal_lm")  # image: peft LoRA on the pointwise convs / ViT qkv (timm backbones)

    def __init__(
        self,
        r: int = 8,
        alpha: int = 16,
        dropout: float | str = "auto",
        target_modules: list[str] | str | None = None,
        bias: str = "none",
        lr: float = 1e-3,
        peft_lr: float | str | None = "auto",
        norm: NormPolicy = "frozen",
        merge_check: int | None = 100,
    ) -> None:
        if isinstance(peft_lr, str) and peft_lr != "auto":
            raise ConfigError(f"strategy.peft_lr={peft_lr!r} must be 'auto', a rate > 0, or null (strategy.lr).")
        super().__init__(lr=lr, peft_lr=None if peft_lr == "auto" else peft_lr, norm=norm)
        self.peft_lr_setting = peft_lr
        if merge_check is not None and (
            isinstance(merge_check, bool) or not isinstance(merge_check, int) or merge_check < 1
        ):
            raise ConfigError(
                f"strategy.merge_check={merge_check!r} must be a number of test examples >= 1, or null (all of them)."
            )
        self.merge_check = merge_check
        if r < 1:
            raise ConfigError(f"strategy.r={r} must be >= 1.")
        if dropout != "auto" and (
            isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1
        ):
            raise ConfigError(f"strategy.dropout={dropout!r} must be 'auto' or in [0, 1).")
        if bias not in ("none", "all", "lora_only"):
            raise ConfigError(f"strategy.bias='{bias}' must be 'none', 'all' or 'lora_only' (which biases train).")
        self.r, self.alpha, self.dropout, self.bias = r, alpha, dropout, bias
        if isinstance(target_modules, str):
            import re

            try:
                re.compile(target_modules)
            except re.error as e:
                raise ConfigError(
                    f"strategy.target_modules='{target_modules}' is not a regular expression ({e}); give a list of "
                    "module names or a valid pattern."
                ) from e
        self.target_modules = (
            target_modules if isinstance(target_modules, str) or not target_modules else list(target_modules)
        )

    def _dropout(self, backbone) -> float:
        """The LoRA dropout used on this backbone (`strategy.dropout`, resolving "auto"), recorded."""
        kind = backbone.info.kind
        if self.dropout != "auto":
            used, why = float(self.dropout), "set"
        elif kind == "image":
            used = 0.0
            why = (
                "auto: an image backbone (the mask over every adapted conv's activations cost ~20 % of a CPU step; "
                "equal validation accuracy without it, docs/results/strategies_vs_datasize/NOTES.md)"
            )
        else:
            used, why = 0.05, f"auto: a {kind} backbone (the QLoRA paper's and peft examples' value)"
        self._choices["dropout"] = {"setting": self.dropout, "used": used, "why": why}
        return used

    def _rate(self, backbone) -> float:
        """The LoRA matrices' learning rate on this backbone (`strategy.peft_lr`, resolving "auto"), recorded."""
        kind = backbone.info.kind
        if self.peft_lr_setting != "auto":
            why = "set" if self.peft_lr_setting is not None else "null: strategy.lr"
        elif kind == "image":
            self.peft_lr = 3e-3
            why = (
                "auto: an image backbone (best mean val/acc of 3e-4..1e-2 on EfficientNet-Lite0, 1e-2 collapses; "
                "docs/results/lora_rate_rank.md)"
            )
        else:
            self.peft_lr = 1e-3
            why = f"auto: a {kind} backbone (chosen over 3e-3 on MiniLM, docs/results/text_peft.md)"
        self._choices["peft_lr"] = {"setting": self.peft_lr_setting, "used": self.peft_lr, "why": why}
        return self.peft_lr

    def _check_rank(self, backbone, targets: list[str] | str) -> None:
        """A rank as wide as an adapted layer is no low-rank update (and a huge one exhausts memory)."""
        import re

        def adapted(n: str) -> bool:
            if isinstance(targets, str):
                return re.fullmatch(targets, n) is not None
            return any(n == t or n.endswith("." + t) for t in targets)

        widths = [
            min(getattr(m, "in_features", 0) or m.in_channels, getattr(m, "out_features", 0) or m.out_channels)
            for n, m in backbone.model.named_modules()
            if adapted(n) and hasattr(m, "weight") and (hasattr(m, "in_features") or hasattr(m, "in_channels"))
        ]
        if isinstance(targets, str) and not widths:
            raise ConfigError(
                f"strategy.target_modules='{targets}' matches no layer of '{backbone.info.name}' LoRA can adapt; "
                "the pattern must match whole module names (e.g. blocks\\.6\\..*conv_pw)."
            )
        if widths and self.r >= min(widths):
            raise ConfigError(
                f"strategy.r={self.r} is not a low rank for '{backbone.info.name}': its narrowest adapted layer is "
                f"{min(widths)} wide. Use strategy.r < {min(widths)} (LoRA typically 4-64)."
            )

    def peft_config(self, backbone):
        from peft import LoraConfig

        targets = self.target_modules
        if targets is None and hasattr(backbone, "lora_target_modules"):
            targets = backbone.lora_target_modules()
        if targets:
            self._check_rank(backbone, targets)
        self._choices = {}
        self._rate(backbone)
        try:
            return LoraConfig(
                task_type=backbone.peft_task_type,
                r=self.r,
                lora_alpha=self.alpha,
                lora_dropout=self._dropout(backbone),
                target_modules=targets,
                bias=self.bias,
            )
        except ValueError as e:
            raise ConfigError(
                f"strategy={self.name}: {e}. Set strategy.target_modules to module names of "
                f"'{backbone.info.name}' (e.g. [query,value] for BERT, [q_proj,v_proj] for Llama)."
            ) from e
