"""QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs"): LoRA on a 4-bit NF4 base."""

from __future__ import annotations

import logging

from transferlab.errors import ConfigError
from transferlab.strategies.lora import Lora

log = logging.getLogger("transferlab")


class Qlora(Lora):
    """LoRA adapters trained on top of a base whose linear layers are NF4 4-bit (bitsandbytes `Linear4bit`).

    The backbone is loaded quantized: the HF backbone configs read `strategy.quantization`, so the
    weights are quantized while loading (no full-precision copy of a 7B model on the GPU); a
    backbone built without it is reloaded in 4 bit. Works on CPU with bitsandbytes >= 0.45 and CUDA.

    Args:
        quantization: `{quant_type: nf4, double_quant: true, compute_dtype: float32}` passed to the
            backbone (compute dtype bfloat16 on a GPU).
        gradient_checkpointing: recompute activations in backward (saves memory, costs time).
        **lora: see `Lora`.
    """

    mergeable = True  # merging into 4-bit weights rounds: the re-evaluation reports the difference
    kinds = ("text", "causal_lm")  # bitsandbytes quantizes transformers' Linear layers (HF backbones)

    def __init__(self, quantization: dict | None = None, gradient_checkpointing: bool = False, **lora) -> None:
        super().__init__(**lora)
        self.quantization = dict(
            quantization or {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
        )
        if self.quantization.get("quant_type", "nf4") not in ("nf4", "fp4"):
            raise ConfigError(f"strategy.quantization.quant_type={self.quantization['quant_type']} must be nf4 or fp4.")
        self.gradient_checkpointing = gradient_checkpointing

    def prepare(self, backbone) -> None:
        from peft import prepare_model_for_kbit_training

        if not backbone.is_quantized():  # built without `quantization` (direct API use): reload in 4 bit
            log.warning(
                "qlora: reloading '%s' in 4 bit (give the backbone quantization= to load it once)", backbone.info.name
            )
            backbone.load(self.quantization)
            backbone.requires_grad_(False)
        backbone.model = prepare_model_for_kbit_training(
            backbone.model, use_gradient_checkpointing=self.gradient_checkpointing
        )
        keep_4bit_trainable(backbone.model)


def keep_4bit_trainable(model) -> int:
    """Turn off bitsandbytes' CPU repacking of `Linear4bit` weights, undoing it where it already happened; returns how
    many layers had it on.

    bitsandbytes (0.50.2) repacks a 4-bit weight for a faster CPU kernel the first time the layer runs in eval mode
    without gradients on a CPU with AVX512-BF16, and keeps that layout; the build's dropout-order trace
    (`model.dropout`) is such a pass, before the first step. Every later forward, training ones too, then goes
    through `gemv_4bit`, which has no backward: no gradient flows through the frozen base to the adapters below it,
    silently, and a layer with a bias stops training with "a view of a leaf Variable that requires grad is being
    used in an in-place operation" (MiniLM). With the repacking off, evaluation runs the same kernel as training.
    No effect on CUDA.
    """
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    on = sum(bool(getattr(m, "support_avx512bf16_for_cpu", False)) for m in layers)
    for m in layers:
        m.support_avx512bf16_for_cpu = False
        state = getattr(m.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):  # repacked before: back
            m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu_inverse(m.weight.data, state)
    return on
