"""Backbone contract over every conf/backbone YAML, plus weight loading paths."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from transferlab.backbones.timm import TimmBackbone
from transferlab.backbones.weights import efficientnet_lite0
from transferlab.config.instantiate import build as instantiate
from transferlab.errors import WeightsError

BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml") if p.stem != "timm")


def load_cfg(name):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"backbone={name}"]).backbone


def is_offline_asset(cfg) -> bool:
    """Packaged weights (a nested _target_), a local path, or random init: loadable offline."""
    c = OmegaConf.to_container(cfg)
    return isinstance(c.get("weights"), dict) or c.get("pretrained") is False or bool(c.get("path_is_package"))


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_contract_or_fast_offline_error(name):
    cfg = load_cfg(name)
    start = time.monotonic()
    try:
        bb = instantiate(cfg)
    except WeightsError as e:
        # Hub-only backbones offline: fail within seconds, saying how to supply local weights.
        assert time.monotonic() - start < 15
        msg = str(e)
        assert "offline" in msg.lower() or "unreachable" in msg or "HF_HUB_OFFLINE" in msg
        assert "backbone." in msg, "the message must name the config key that supplies local weights"
        return
    assert bb.info.license, f"{name}: licence unknown"
    assert bb.info.source and bb.info.name
    groups = bb.layer_groups()
    assert len(groups) >= 2
    seen = [id(p) for g in groups for p in g.parameters()]
    assert len(seen) == len(set(seen)), "a parameter is in two layer groups"
    assert set(seen) == {id(p) for p in bb.parameters()}, "layer groups must cover every parameter"
    if bb.info.kind == "image":
        c, h, w = bb.preprocessing.input_size
        feats = bb.eval()(torch.randn(2, c, 32, 32))
        assert feats.shape == (2, bb.num_features)


def test_packaged_efficientnet_is_really_imagenet_pretrained():
    """The packaged weights classify a real photo (skimage's coffee cup) as espresso/cup."""
    import skimage
    import timm
    from safetensors.torch import load_file

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(load_file(str(efficientnet_lite0().path)))
    img = torch.tensor(skimage.data.coffee()).permute(2, 0, 1).float().div(255)[None]
    img = (torch.nn.functional.interpolate(img, size=224, mode="bilinear") - 0.5) / 0.5
    probs = model.eval()(img).softmax(-1)[0]
    assert probs.argmax().item() in {967, 968, 504}  # espresso, cup, coffee mug
    assert probs.max() > 0.5


def test_grayscale_stem_is_summed_rgb_weights():
    wf = efficientnet_lite0()
    rgb = TimmBackbone("tf_efficientnet_lite0", weights=wf)
    gray = TimmBackbone("tf_efficientnet_lite0", weights=wf, in_chans=1)
    w3, w1 = rgb.model.conv_stem.weight, gray.model.conv_stem.weight
    assert w1.shape[1] == 1
    torch.testing.assert_close(w1[:, 0], w3.sum(dim=1))
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(gray.eval()(x), rgb.eval()(x.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)
    assert gray.preprocessing.in_chans == 1 and len(gray.preprocessing.mean) == 1


@pytest.mark.parametrize("model_name", ["mobilenetv3_small_100", "mobilenetv3_small_100.lamb_in1k", "resnet18"])
def test_timm_num_features_is_the_output_width(model_name):
    """MobileNetV3's head has a hidden layer after pooling: features are head_hidden_size (1024), not 576."""
    bb = TimmBackbone(model_name, pretrained=False)
    assert bb(torch.zeros(2, 3, 64, 64)).shape == (2, bb.num_features)


def test_local_weights_file_roundtrip(tmp_path):
    from safetensors.torch import save_file

    src = TimmBackbone("resnet18", pretrained=False)
    state = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    save_file(state, str(tmp_path / "r18.safetensors"))
    torch.save(state, tmp_path / "r18.pth")
    for f in ("r18.safetensors", "r18.pth"):
        bb = TimmBackbone("resnet18", weights=str(tmp_path / f))
        assert bb.info.source == f"file:{tmp_path / f}"
        torch.testing.assert_close(bb.model.conv1.weight, src.model.conv1.weight)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_or_missing_weights_file(tmp_path, content):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(WeightsError, match="could not read weights file"):
        TimmBackbone("resnet18", weights=str(bad))
    with pytest.raises(WeightsError, match="not found"):
        TimmBackbone("resnet18", weights=str(tmp_path / "missing.pth"))


def test_weights_of_another_architecture_are_refused(tmp_path):
    from safetensors.torch import save_file

    other = TimmBackbone("resnet18", pretrained=False).model.state_dict()
    save_file({k: v.contiguous() for k, v in other.items()}, str(tmp_path / "r18.safetensors"))
    with pytest.raises(WeightsError, match="don't fit"):
        TimmBackbone("tf_efficientnet_lite0", weights=str(tmp_path / "r18.safetensors"))


def test_unknown_timm_model_suggests_names():
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown timm model"):
        TimmBackbone("resnet5000", pretrained=False)
