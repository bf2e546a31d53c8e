"""`depthwise_crop` (auto | true | false): a depthwise convolution on a map smaller than its kernel computed
without the taps that only meet padding. The same outputs and gradients as the layer's own forward (every
padding form the backbones use), only where the map is small; applied, recorded and keyed apart in the
feature cache by a run; invisible to tracing and to the state dict; a wrong value refused early."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_config

from transferlab.errors import ConfigError
from transferlab.model import depthwise_crop as dc


def _same(c: int, k: int, s: int) -> nn.Conv2d:
    from timm.layers import Conv2dSame

    return Conv2dSame(c, c, k, stride=s, groups=c, bias=False)


LAYERS = {  # name: (layer, map sizes (h, w))
    "k3 s1 pad 1": (lambda: nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False), [(1, 1), (2, 2), (1, 5), (4, 4)]),
    "k5 s1 pad 2 + bias": (lambda: nn.Conv2d(24, 24, 5, padding=2, groups=24), [(1, 1), (2, 2), (3, 4), (8, 8)]),
    "k5 s2 pad 2": (lambda: nn.Conv2d(24, 24, 5, stride=2, padding=2, groups=24, bias=False), [(1, 1), (2, 2), (3, 3)]),
    "k3 s2 pad 1": (lambda: nn.Conv2d(24, 24, 3, stride=2, padding=1, groups=24, bias=False), [(1, 1), (2, 2), (2, 3)]),
    "k5 'same'": (lambda: nn.Conv2d(24, 24, 5, padding="same", groups=24, bias=False), [(1, 1), (2, 3)]),
    "k3x5 pad 1x2": (
        lambda: nn.Conv2d(24, 24, (3, 5), padding=(1, 2), groups=24, bias=False),
        [(1, 1), (3, 4), (2, 6), (4, 6)],
    ),  # one axis small, the other not
    "k5 s2 TF-SAME (timm)": (lambda: _same(24, 5, 2), [(1, 1), (2, 2), (3, 3), (4, 4)]),
    "k3 s2 TF-SAME (timm)": (lambda: _same(24, 3, 2), [(1, 1), (2, 2)]),
    "k3 channel multiplier 2": (lambda: nn.Conv2d(24, 48, 3, padding=1, groups=24, bias=False), [(1, 1), (2, 2)]),
}


def _is_tf_same(layer: nn.Module) -> bool:
    from timm.layers import Conv2dSame

    return isinstance(layer, Conv2dSame)


def _all_taps_meet_input(layer: nn.Conv2d, h: int, w: int, pads: tuple[int, int, int, int]) -> bool:
    """Brute force: every kernel tap multiplies a real input element for some output position."""
    (kh, kw), (sh, sw), (top, bottom, left, right) = layer.kernel_size, layer.stride, pads
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    rows = {t for t in range(kh) for y in range(oh) if 0 <= y * sh + t - top < h}
    cols = {t for t in range(kw) for x in range(ow) if 0 <= x * sw + t - left < w}
    return len(rows) == kh and len(cols) == kw


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_the_cropped_layer_gives_the_layers_outputs_and_gradients(name: str, channels_last: bool) -> None:
    make, sizes = LAYERS[name]
    torch.manual_seed(0)
    native = make()
    if channels_last:
        native = native.to(memory_format=torch.channels_last)
    cropped = copy.deepcopy(native)
    assert dc.apply(cropped) == 1
    for h, w in sizes:
        x = torch.randn(8, 24, h, w)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        grad_out = None
        got = {}
        for label, layer in (("native", native), ("cropped", cropped)):
            layer.zero_grad()
            xi = x.clone().requires_grad_()
            y = layer(xi)
            grad_out = torch.randn_like(y) if grad_out is None else grad_out
            (y * grad_out).sum().backward()
            got[label] = (y.detach(), xi.grad, [p.grad for p in layer.parameters()])
        (y0, gx0, gw0), (y1, gx1, gw1) = got["native"], got["cropped"]
        assert y1.shape == y0.shape
        torch.testing.assert_close(y1, y0, rtol=0, atol=1e-6)  # the same sums less exact zeros
        torch.testing.assert_close(gx1, gx0, rtol=1e-5, atol=1e-6)
        for a, b in zip(gw1, gw0, strict=True):  # summed over the batch in another order: rounding
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        (kh, kw), pads = native.kernel_size, dc._padding(native, h, w)
        small = h < kh or w < kw  # where the weight's gradient is slow: cropped when it trains
        kept = _is_tf_same(native) and _all_taps_meet_input(native, h, w, pads)  # the same computation as its own
        assert (cropped._crop_plans[(h, w, True)] != dc._NATIVE) == (small and not kept), (h, w)
        with torch.no_grad():  # evaluation: cropped only where the padding is wider than the map
            torch.testing.assert_close(cropped(x), native(x), rtol=0, atol=1e-6)
        wide = max(pads[:2]) > h or max(pads[2:]) > w
        assert (cropped._crop_plans[(h, w, False)] != dc._NATIVE) == (wide and not kept), (h, w)


def test_it_applies_to_depthwise_layers_only_and_leaves_the_state_dict_alone() -> None:
    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=0)
    keys = list(lite0.state_dict())
    assert dc.apply(lite0) == 16 and dc.applied(lite0)
    assert dc.apply(lite0) == 0  # applied once
    assert dc.apply(resnet) == 0 and not dc.applied(resnet)
    assert list(lite0.state_dict()) == keys
    copied = copy.deepcopy(lite0)  # Lightning, EMA, the prefix cache copy modules
    x = torch.randn(2, 3, 32, 32)
    lite0.eval(), copied.eval()
    torch.testing.assert_close(copied(x), lite0(x), rtol=0, atol=0)
    dc.remove(lite0)
    assert not dc.applied(lite0) and dc.apply(lite0) == 16


def test_a_cropped_model_pickles_and_stays_a_subclass_of_its_layers() -> None:
    """ddp_spawn and multiprocessing pickle the module: the cropped layers (both classes) come back cropping."""
    import pickle

    from timm.layers import Conv2dSame

    model = nn.Sequential(nn.Conv2d(8, 8, 5, padding=2, groups=8), Conv2dSame(8, 8, 5, stride=2, groups=8))
    native = copy.deepcopy(model)
    dc.apply(model)
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[1], Conv2dSame)
    assert type(model[1]).__name__ == "CroppedConv2dSame"
    x = torch.randn(2, 8, 1, 1)
    model(x)
    back = pickle.loads(pickle.dumps(model))
    assert isinstance(back[0], dc.CroppedConv2d) and back[0]._crop_plans == model[0]._crop_plans
    torch.testing.assert_close(back(x), native(x), rtol=0, atol=1e-6)


def test_tracing_sees_the_layers_own_forward() -> None:
    """A traced graph (ONNX export traces) must hold at other map sizes: the crop is a plan per size."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 5, padding=2, groups=8), nn.ReLU()).eval()
    native = copy.deepcopy(model)
    dc.apply(model)
    traced = torch.jit.trace(model, torch.randn(1, 8, 2, 2))
    x = torch.randn(1, 8, 9, 9)
    torch.testing.assert_close(traced(x), native(x))
    assert isinstance(model[0], dc.CroppedConv2d)
    model(torch.randn(1, 8, 1, 1))  # outside tracing it crops
    assert model[0]._crop_plans[(1, 1, True)] != dc._NATIVE


def test_auto_crops_on_a_cpu_only() -> None:
    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=0)
    cpu = dc.choose("auto", lite0, "cpu")
    assert cpu["used"] and cpu["layers"] == 16 and "smaller than the kernel" in cpu["why"]
    gpu = dc.choose("auto", lite0, "gpu")
    assert not gpu["used"] and "not measured" in gpu["why"]
    assert dc.choose("auto", resnet, "cpu") == {"setting": "auto", "used": False, "layers": 0,
                                                "why": "no depthwise convolutions"}  # fmt: skip
    assert dc.choose(True, lite0, "gpu")["used"] and not dc.choose(False, lite0, "cpu")["used"]
    with pytest.raises(ValueError, match="depthwise_crop='yes'"):
        dc.choose("yes", lite0, "cpu")


def test_a_run_records_it_and_gets_the_same_results(tmp_path: Path) -> None:
    """strategy=full at 32 px (11 of EfficientNet-Lite0's 16 depthwise layers see maps smaller than their
    kernel): the first steps of training and the metrics agree with the layers' own kernels."""
    runs = {
        crop: run_config(["strategy=full", f"depthwise_crop={crop}"], tmp_path / crop) for crop in ("auto", "false")
    }
    on, off = runs["auto"], runs["false"]
    assert on["depthwise_crop"]["used"] and on["depthwise_crop"]["layers"] == 16
    assert off["depthwise_crop"] == {"setting": False, "used": False, "layers": 16, "why": "set in the config"}
    for key in ("test/acc", "val/acc"):
        assert on["metrics"][key] == pytest.approx(off["metrics"][key], abs=1e-6), key
    assert on["metrics"]["train/loss"] == pytest.approx(off["metrics"]["train/loss"], rel=1e-4)


def test_a_cached_prefix_is_kept_apart(tmp_path: Path) -> None:
    base = ["strategy=partial", f"cache.dir={tmp_path / 'cache'}"]
    a = run_config([*base, "depthwise_crop=auto"], tmp_path / "a")
    b = run_config([*base, "depthwise_crop=false"], tmp_path / "b")
    assert a["feature_cache"]["used"] and b["feature_cache"]["used"]
    assert a["feature_cache"]["hits"] == b["feature_cache"]["hits"] == 0  # b did not read a's entry
    assert a["metrics"]["test/acc"] == pytest.approx(b["metrics"]["test/acc"], abs=1e-6)


def test_a_wrong_value_is_refused_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="depthwise_crop='maybe' must be 'auto', true or false"):
        run_config(["depthwise_crop=maybe"], tmp_path / "run")
