"""`memory_format` (auto | channels_last | contiguous): which layout a run chooses, that it is applied and
recorded, that it changes the speed and not the results, and that a wrong value is refused early."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_config

from transferlab.errors import ConfigError
from transferlab.model.memory_format import choose, depthwise_convs, layout_of


def test_auto_chooses_channels_last_only_for_depthwise_convolutions_on_a_cpu() -> None:
    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=0)
    assert depthwise_convs(lite0) == 16 and depthwise_convs(resnet) == 0
    assert choose("auto", lite0, "cpu")["used"] == "channels_last"
    assert choose("auto", resnet, "cpu")["used"] == "contiguous"
    gpu = choose("auto", lite0, "gpu")  # not measured on a GPU here: the default layout, and the record says why
    assert gpu["used"] == "contiguous" and "not measured" in gpu["why"]
    assert choose("channels_last", resnet, "cpu") == {"setting": "channels_last", "used": "channels_last",
                                                      "why": "set in the config"}  # fmt: skip
    assert choose("contiguous", lite0, "cpu")["used"] == "contiguous"


def test_the_layout_is_applied_recorded_and_leaves_the_results_alone(tmp_path: Path) -> None:
    """strategy=full trains the whole (channels_last) network; LoRA adds contiguous adapter weights, which
    save_pretrained writes as safetensors. Both layouts give the same metrics (2 steps, fixed seed)."""
    runs = {}
    for layout in ("auto", "contiguous"):
        runs[layout] = run_config(["strategy=full", f"memory_format={layout}"], tmp_path / layout)
    auto, plain = runs["auto"], runs["contiguous"]
    assert auto["memory_format"]["used"] == "channels_last" and "depthwise" in auto["memory_format"]["why"]
    assert plain["memory_format"] == {"setting": "contiguous", "used": "contiguous", "why": "set in the config"}
    for key in ("test/acc", "val/acc"):
        assert auto["metrics"][key] == pytest.approx(plain["metrics"][key], abs=1e-6), key
    assert auto["metrics"]["train/loss"] == pytest.approx(plain["metrics"]["train/loss"], rel=1e-4)

    lora = run_config(["strategy=lora", "memory_format=null"], tmp_path / "lora")  # null: the default, auto
    assert lora["memory_format"]["setting"] == "auto" and lora["memory_format"]["used"] == "channels_last"
    assert lora["adapter"]["merged"]["within_tol"]
    assert (tmp_path / "lora" / "adapter" / "adapter_model.safetensors").is_file()


def test_a_cached_prefix_is_kept_per_layout_and_handed_to_the_suffix_in_it(tmp_path: Path) -> None:
    """partial caches its frozen prefix: channels_last outputs are stored contiguous (safetensors), keyed apart
    from the contiguous run's, and the suffix gets them back in channels_last, as uncached training would."""
    base = ["strategy=partial", f"cache.dir={tmp_path / 'cache'}"]
    a = run_config([*base, "memory_format=auto"], tmp_path / "a")
    b = run_config([*base, "memory_format=contiguous"], tmp_path / "b")
    assert a["feature_cache"]["used"] and b["feature_cache"]["used"]
    assert a["feature_cache"]["hits"] == b["feature_cache"]["hits"] == 0  # b did not read a's entry
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2
    assert a["metrics"]["test/acc"] == pytest.approx(b["metrics"]["test/acc"], abs=1e-6)


def test_layout_of_reads_the_kxk_weights() -> None:
    for conv in (torch.nn.Conv2d(4, 4, 1), torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Conv2d(3, 4, 3)):
        assert layout_of(conv) == "contiguous"  # 1x1 and depthwise weights: contiguous in both layouts,
        assert layout_of(conv.to(memory_format=torch.channels_last)) == "channels_last"  # told apart by strides
    assert layout_of(torch.nn.Linear(2, 2)) == "contiguous"


@pytest.mark.parametrize(
    "overrides, fragment, fast",
    [
        (["memory_format=nhwc"], "memory_format='nhwc' must be 'auto', 'channels_last' or 'contiguous'", True),
        (["memory_format=channels_last", "backbone=minilm", "data=reviews"], "memory_format=channels_last lays", False),
    ],
)
def test_a_wrong_layout_is_refused_before_anything_loads(overrides, fragment, fast, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=fragment):
        run_config(overrides, tmp_path / "run", fast=fast)
    assert "backbone" not in __import__("json").loads((tmp_path / "run" / "results.json").read_text())
