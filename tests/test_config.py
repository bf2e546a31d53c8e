"""Every YAML in every config group composes, documents itself and builds (globbed: new files are covered)."""

from __future__ import annotations

import pytest
from conftest import CONF, compose
from hydra.utils import instantiate

GROUPS = ["backbone", "strategy", "adaptation", "augment", "tta", "data", "hardware", "logger", "experiment"]
FILES = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_has_files():
    for group in GROUPS:
        assert list((CONF / group).glob("*.yaml")), f"conf/{group}/ is empty"


@pytest.mark.parametrize("group,name", FILES, ids=[f"{g}={n}" for g, n in FILES])
def test_composes_and_documents(group, name, tmp_path):
    text = (CONF / group / f"{name}.yaml").read_text()
    assert text.lstrip().startswith("#"), f"conf/{group}/{name}.yaml needs a header comment"
    assert "python train.py" in text, f"conf/{group}/{name}.yaml: header must show the command that runs it"
    extra = ["data.root=/tmp/x"] if name == "imagefolder" else []
    cfg = compose([f"{group}={name}", *extra], tmp_path)
    assert cfg.seed == 0
    if group == "experiment":
        return
    node = cfg.get(group)
    if group == "backbone":
        assert node._target_.startswith("transferlab.backbones.")
    if group == "strategy":
        strategy = instantiate(node)  # hyper-parameter validation happens in __init__
        assert strategy.lr > 0 and strategy.kinds
    if group == "adaptation" and node:
        assert node.get("_partial_"), "adaptation configs are partials sized at run time"


@pytest.mark.parametrize("name", [p.stem for p in sorted((CONF / "hardware").glob("*.yaml"))])
def test_hardware_maps_onto_lightning(name, tmp_path):
    cfg = compose([f"hardware={name}"], tmp_path)
    hw = cfg.hardware
    assert hw.accelerator in {"cpu", "gpu", "auto"}
    assert hw.precision in {"32-true", "bf16-mixed", "16-mixed", "bf16-true"}
    strategy = hw.get("strategy")
    if isinstance(strategy, str) or strategy is None:
        return
    assert instantiate(strategy).__class__.__name__.endswith("Strategy")


def test_unknown_choice_lists_the_options(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="efficientnet_lite0"):
        compose(["backbone=no_such_backbone"], tmp_path)


def test_unknown_key_is_refused(tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="train_per_clas"):
        compose(["data.train_per_clas=5"], tmp_path)
