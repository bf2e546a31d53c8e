"""`depthwise_crop`: depthwise convolutions on maps smaller than their kernel, without the taps that only meet padding.

At the image sizes a CPU study uses (32-64 px), the last stages of EfficientNet/MobileNet-like backbones see 1x1
to 4x4 maps through 3x3 and 5x5 depthwise kernels. There oneDNN's depthwise weight gradient is slow: 2-24x slower
than the same sums computed another way, and its forward too where the padding is wider than the map (BENCHMARKS.md
P11, a grid of channels, kernel, stride and map size). On such a map most kernel taps only ever meet zero padding.
This computes the convolution with the kernel cropped to the taps that meet a real input element, after padding the
input explicitly with the zeros the remaining taps need: every output is the same sum less terms that are exactly 0
(identical outputs in the tests; gradients equal to 1e-15 in float64, in float32 up to the order of a sum). It is
used where it pays: a layer whose weight gets a gradient, where the map is smaller than the kernel; otherwise (a
forward, or only the input's gradient), where the padding is wider than the map. Elsewhere the layer runs as before.

`auto` turns it on for CPU runs of backbones with depthwise convolutions; on a GPU it is not measured here and
stays off (`depthwise_crop=true` asks for it). Tracing, ONNX export and `torch.compile` see the layer's own
forward. Parameters, state dicts and checkpoints are unchanged: a layer becomes a subclass of its own class
(`CroppedConv2d`, `CroppedConv2dSame`) that only overrides `forward`, so it pickles, copies and `isinstance`s as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHOICES = ("auto", True, False)

_NATIVE = "native"  # a plan cache entry: run the layer's own forward for this map size


def _axis(n: int, k: int, s: int, left: int, right: int) -> tuple[int, int, int, int, int, int] | None:
    """One spatial axis of size `n`, kernel `k`, stride `s`, zero padding (`left`, `right`): the taps
    `[lo, hi)` that meet a real input element, the padding the cropped kernel needs, its stride and the output
    size; None when no output or no tap meets the input (left to the layer's own forward)."""
    out = (n + left + right - k) // s + 1
    lo, hi = max(0, left - (out - 1) * s), min(k, left + n)
    if out < 1 or hi <= lo:
        return None
    pad_left = left - lo
    pad_right = max(0, (out - 1) * s + (hi - lo) - pad_left - n)
    return lo, hi, pad_left, pad_right, (1 if out == 1 else s), out


def _padding(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) zero padding the layer applies to an `h` x `w` map; None: not plain zeros."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if _is_timm_same(conv):  # TensorFlow "SAME": timm pads the input itself (more on the bottom/right)
        ph = max((-(-h // sh) - 1) * sh + kh - h, 0)
        pw = max((-(-w // sw) - 1) * sw + kw - w, 0)
        return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2
    if conv.padding == "valid":
        return 0, 0, 0, 0
    if conv.padding == "same":
        return (kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2
    ph, pw = conv.padding
    return ph, ph, pw, pw


def _is_timm_same(conv: nn.Module) -> bool:
    return any(c.__name__ == "Conv2dSame" and c.__module__.startswith("timm.") for c in type(conv).__mro__)


def eligible(conv: nn.Module) -> bool:
    """A depthwise 2-D convolution (one group per input channel) with zero padding and no dilation, of class
    `nn.Conv2d` or timm's TensorFlow-"SAME" `Conv2dSame` (other subclasses have forwards of their own)."""
    if type(conv) is not nn.Conv2d and not (_is_timm_same(conv) and type(conv).__name__ == "Conv2dSame"):
        return False
    return (
        conv.groups > 1 and conv.groups == conv.in_channels and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
    )


def _plan(conv: nn.Conv2d, h: int, w: int, trains: bool):
    """The cropped computation for an `h` x `w` map, or `_NATIVE`. Where it pays (BENCHMARKS.md P11, part 1):
    when the weight gets a gradient, wherever the map is smaller than the kernel (oneDNN's weight gradient is
    slow there); otherwise (a forward, or only the input's gradient) where the padding is wider than the map."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    pads = _padding(conv, h, w)
    if pads is None:
        return _NATIVE
    top, bottom, left, right = pads
    slow = (h < kh or w < kw) if trains else max(top, bottom) > h or max(left, right) > w
    rows, cols = _axis(h, kh, sh, top, bottom), _axis(w, kw, sw, left, right)
    if not slow or rows is None or cols is None:
        return _NATIVE
    if _is_timm_same(conv) and rows[:2] == (0, kh) and cols[:2] == (0, kw):
        return _NATIVE  # padded explicitly already and every tap kept: the same computation
    return rows, cols


class _Cropped:
    """The layer's own class, with its convolution computed from the kernel cropped to the taps that meet a small
    input map (a plan per map size and whether the weight trains, `_crop_plans`)."""

    _crop_plans: dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            return super().forward(x)
        key = (*x.shape[-2:], self.weight.requires_grad and torch.is_grad_enabled())
        plan = self._crop_plans.get(key)
        if plan is None:
            plan = self._crop_plans[key] = _plan(self, *key)
        if plan == _NATIVE:
            return super().forward(x)
        (r0, r1, top, bottom, sh, oh), (c0, c1, left, right, sw, ow) = plan
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, self.weight[:, :, r0:r1, c0:c1], self.bias, (sh, sw), 0, 1, self.groups)
        return y if y.shape[-2:] == (oh, ow) else y[:, :, :oh, :ow]


class CroppedConv2d(_Cropped, nn.Conv2d):
    pass


def __getattr__(name: str):  # `CroppedConv2dSame` is made on first use (timm imported then), e.g. by unpickling
    if name == "CroppedConv2dSame":
        from timm.layers import Conv2dSame

        globals()[name] = type(name, (_Cropped, Conv2dSame), {"__module__": __name__, "__qualname__": name})
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply(module: nn.Module) -> int:
    """Crop the depthwise convolutions of `module` where their input is smaller than their kernel (in place);
    returns how many layers may crop."""
    n = 0
    for m in module.modules():
        if eligible(m):
            m.__class__ = CroppedConv2d if type(m) is nn.Conv2d else __getattr__("CroppedConv2dSame")
            m._crop_plans = {}
            n += 1
    return n


def remove(module: nn.Module) -> None:
    """Give every layer its own class (and forward) back."""
    for m in module.modules():
        if isinstance(m, _Cropped):
            m.__class__ = type(m).__mro__[2]  # (CroppedX, _Cropped, X, ...)
            del m._crop_plans


def applied(module: nn.Module) -> bool:
    return any(isinstance(m, _Cropped) for m in module.modules())


def choose(setting, backbone: nn.Module, accelerator: str) -> dict:
    """`{"setting", "used", "layers", "why"}` for results.json: whether a run crops `backbone`'s depthwise convs."""
    if setting not in CHOICES:  # validation refuses it first; a direct caller gets the same answer
        raise ValueError(f"depthwise_crop={setting!r} must be 'auto', true or false")
    layers = sum(1 for m in backbone.modules() if eligible(m))
    if setting is not True and setting is not False:
        on_cpu = str(accelerator) == "cpu" or (str(accelerator) == "auto" and not torch.cuda.is_available())
        if not on_cpu:
            why = f"accelerator={accelerator}: not measured here; depthwise_crop=true asks for it"
            return {"setting": "auto", "used": False, "layers": layers, "why": why}
        why = ("depthwise convolutions on a CPU: cropped where a map is smaller than the kernel (BENCHMARKS.md P11)"
               if layers else "no depthwise convolutions")  # fmt: skip
        return {"setting": "auto", "used": layers > 0, "layers": layers, "why": why}
    return {"setting": setting, "used": setting and layers > 0, "layers": layers, "why": "set in the config"}
