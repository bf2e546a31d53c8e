"""`memory_format`: how a convolutional backbone lays out its 4-D weights and activations.

`channels_last` (NHWC) lets oneDNN use its fast depthwise-convolution kernels on a CPU: full fine-tuning of
EfficientNet-Lite0 takes 1.30x less fit time end to end and its training steps are 1.4x faster (32-224 px),
while ResNet-18/50 (no depthwise convolutions) and ConvNeXt-T (depthwise convolutions, LayerNorm) are not faster
(0.89-1.01x; BENCHMARKS.md P8). So `auto` chooses channels_last for CPU runs of backbones with depthwise
convolutions and no LayerNorm, and keeps PyTorch's default layout elsewhere. On a GPU, channels_last is the usual
advice for convolutions under mixed precision, but it is not measured here: `auto` keeps the default there, and
`memory_format=channels_last` asks for it. The values a run computes are the same up to float rounding, which a
long run can amplify (the default job's test accuracy: 0.937 vs 0.939, one test image).

Only the backbone's parameters change layout (`Module.to(memory_format=...)`), before the strategy adds its
modules: oneDNN runs a convolution in channels_last when its input or its weight is, so activations follow, and
adapter weights (LoRA) stay contiguous for `save_pretrained`.
"""

from __future__ import annotations

import torch

from transferlab.config.ranges import MEMORY_FORMATS as CHOICES  # torch-free: validation checks them early


def depthwise_convs(module: torch.nn.Module) -> int:
    """Number of depthwise 2-D convolutions (one group per input channel, more than one channel)."""
    return sum(
        1 for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    )


def channel_layer_norms(module: torch.nn.Module) -> int:
    """Number of LayerNorm modules (ConvNeXt normalises each position over its channels)."""
    return sum(1 for m in module.modules() if isinstance(m, torch.nn.LayerNorm))


def choose(setting: str, backbone: torch.nn.Module, accelerator: str) -> dict:
    """`{"setting", "used", "why"}`: the layout a run uses for `backbone` on `accelerator`."""
    if setting not in CHOICES:  # validation refuses it first; a direct caller gets the same answer
        raise ValueError(f"memory_format={setting!r} must be one of {', '.join(CHOICES)}")
    if setting != "auto":
        return {"setting": setting, "used": setting, "why": "set in the config"}
    n, norms = depthwise_convs(backbone), channel_layer_norms(backbone)
    on_cpu = str(accelerator) == "cpu" or (str(accelerator) == "auto" and not torch.cuda.is_available())
    if not on_cpu:
        why = f"accelerator={accelerator}: not measured here; memory_format=channels_last asks for it"
    elif n and not norms:
        return {
            "setting": "auto",
            "used": "channels_last",
            "why": f"{n} depthwise convolutions with batch norm on a CPU (EfficientNet/MobileNet-like): "
            "oneDNN's channels_last kernels are faster (BENCHMARKS.md P8)",
        }
    elif n:
        why = f"depthwise convolutions with {norms} LayerNorms (ConvNeXt-like): not faster on a CPU (BENCHMARKS.md P8)"
    else:
        why = "no depthwise convolutions: channels_last is not faster on a CPU (BENCHMARKS.md P8)"
    return {"setting": "auto", "used": "contiguous", "why": why}


def apply(backbone: torch.nn.Module, used: str) -> None:
    """Put the backbone's 4-D parameters and buffers in the `used` layout (in place)."""
    if used == "channels_last":
        backbone.to(memory_format=torch.channels_last)


def layout_of(module: torch.nn.Module) -> str:
    """'channels_last' when any 4-D parameter of the module has channels_last strides, else 'contiguous'.

    Strides, not `is_contiguous`: a depthwise (C, 1, k, k) or 1x1 weight is "contiguous" in both layouts, but
    oneDNN reads its strides to choose the layout of the convolution."""
    for p in module.parameters():
        if p.dim() == 4:
            cl = torch.empty(p.shape, device="meta", memory_format=torch.channels_last).stride()
            if cl != torch.empty(p.shape, device="meta").stride() and p.stride() == cl:
                return "channels_last"
    return "contiguous"
