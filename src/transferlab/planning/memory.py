"""Bytes for weights (by dtype; 4-bit NF4/FP4 with its quantisation constants), gradients and optimizer states.

4-bit layout (bitsandbytes, Dettmers et al. 2023, "QLoRA"): two weights per byte, one fp32 absmax per block
of 64 weights; with double quantisation that absmax is itself 8-bit, with one fp32 constant per 256 blocks:
4 + 8/64 + 32/(64*256) = 4.127 bits per weight (4 + 32/64 = 4.5 bits without).
"""

from __future__ import annotations

from torch import nn

BLOCK, BLOCK2 = 64, 256


def bits_per_4bit_weight(double_quant: bool = True) -> float:
    """Storage bits per weight of a bitsandbytes 4-bit linear layer, constants included."""
    return 4 + (8 / BLOCK + 32 / (BLOCK * BLOCK2) if double_quant else 32 / BLOCK)


def weight_bytes(module: nn.Module, quantized: set[int], double_quant: bool = True) -> dict[str, int]:
    """Bytes of every unique parameter and buffer by storage type: `{"nf4": .., "float32": .., ...}`.

    Args:
        module: the (meta-device, strategy-applied) model.
        quantized: ids of the weights held in 4 bit.
        double_quant: whether the 4-bit constants are themselves quantised.
    """
    out: dict[str, int] = {}
    bits = bits_per_4bit_weight(double_quant)
    for p in {id(p): p for p in module.parameters()}.values():
        key, n = (
            ("4bit", round(p.numel() * bits / 8)) if id(p) in quantized else (_dtype(p), p.numel() * p.element_size())
        )
        out[key] = out.get(key, 0) + n
    for b in {id(b): b for b in module.buffers()}.values():
        out[_dtype(b)] = out.get(_dtype(b), 0) + b.numel() * b.element_size()
    return out


def _dtype(t) -> str:
    return str(t.dtype).replace("torch.", "")


def count(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameters (unique; 4-bit weights at their logical size, as on meta)."""
    params = list({id(p): p for p in module.parameters()}.values())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def optimizer_kind(optimizer_cfg) -> tuple[str, int]:
    """(name, state tensors per parameter) of the configured optimizer; 8-bit optimizers are marked `8bit`."""
    target = str((optimizer_cfg or {}).get("_target_", "torch.optim.AdamW"))
    name = target.rsplit(".", 1)[-1]
    if "8bit" in name:
        return name, -2  # two moments, one byte each
    if name == "SGD":
        return name, 1 if (optimizer_cfg or {}).get("momentum") else 0
    if name in ("Adagrad", "RMSprop"):
        return name, 1
    return name, 2  # Adam, AdamW, NAdam, RAdam, Adamax, Lion-like: two moments


def grads_and_states(module: nn.Module, optimizer_cfg) -> dict[str, int]:
    """Gradient and optimizer-state bytes of the trainable parameters.

    Gradients have the parameter's dtype. torch's Adam/AdamW keep both moments in the parameter's
    dtype: fp32 for fp32 weights, which mixed precision keeps (4 + 4 + 8 = 16 bytes per trained
    parameter); 8-bit optimizers (bitsandbytes `AdamW8bit`) take one byte per moment.
    """
    name, k = optimizer_kind(optimizer_cfg)
    grads = states = 0
    for p in {id(p): p for p in module.parameters()}.values():
        if not p.requires_grad:
            continue
        n, size = p.numel(), p.element_size()
        grads += n * size
        states += n * (-k if k < 0 else k * size)
    return {"gradients": grads, "optimizer_states": states, "optimizer": name}
