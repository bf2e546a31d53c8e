"""Strategy contract over every conf/strategy YAML: trainable set and optimizer groups agree."""

from __future__ import annotations

import copy
import functools

import pytest
from conftest import CONF
from torch import nn

from transferlab.config.instantiate import build
from transferlab.errors import ConfigError

STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))
CANDIDATE_BACKBONES = [n for n in ("efficientnet_lite0", "minilm") if (CONF / "backbone" / f"{n}.yaml").exists()]


def group_cfg(group, name):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"{group}={name}"])[group]


@functools.cache
def pristine_backbone(name):
    return build(group_cfg("backbone", name))


def check_contract(strategy, backbone, head):
    groups = strategy.param_groups(backbone, head)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in two optimizer groups"
    trainable = {id(p) for m in (backbone, head) for p in m.parameters() if p.requires_grad}
    assert set(ids) == trainable, "optimizer groups must hold exactly the trainable parameters"
    assert all(g["lr"] > 0 and g["params"] for g in groups)
    assert any(id(p) in set(ids) for p in head.parameters()) or not strategy.trains
    return groups


@pytest.mark.parametrize("strategy_name", STRATEGIES)
@pytest.mark.parametrize("backbone_name", CANDIDATE_BACKBONES)
def test_strategy_contract(strategy_name, backbone_name):
    strategy = build(group_cfg("strategy", strategy_name))
    backbone = copy.deepcopy(pristine_backbone(backbone_name))
    head = nn.Linear(backbone.num_features, 3)
    if backbone.info.kind not in strategy.kinds:
        with pytest.raises(ConfigError, match="can't adapt"):
            strategy.apply(backbone, head, ["a", "b", "c"])
        return
    backbone = strategy.apply(backbone, head, ["a", "b", "c"])
    check_contract(strategy, backbone, head)


def test_feature_extraction_trains_only_the_head():
    strategy = build(group_cfg("strategy", "feature_extraction"))
    bb = copy.deepcopy(pristine_backbone("efficientnet_lite0"))
    head = nn.Linear(bb.num_features, 3)
    bb = strategy.apply(bb, head)
    assert not any(p.requires_grad for p in bb.parameters())
    groups = check_contract(strategy, bb, head)
    assert [g["name"] for g in groups] == ["head"] and groups[0]["lr"] == strategy.lr


@pytest.mark.parametrize(("backbone_name", "lr", "used"), [("efficientnet_lite0", "auto", 3e-3),
                         ("minilm", "auto", 3e-2), ("efficientnet_lite0", 5e-2, 5e-2)])  # fmt: skip
def test_feature_extraction_rate_auto_by_backbone_kind(backbone_name, lr, used):
    """`lr: auto` is each kind's head rate chosen on validation (docs/results/head_rate.md: image 3e-3, text 3e-2);
    a number is used as given; both are recorded (results.json `strategy_choices`) and reach the optimizer."""
    strategy = build(group_cfg("strategy", "feature_extraction"), lr=lr)
    bb = copy.deepcopy(pristine_backbone(backbone_name))
    head = nn.Linear(bb.num_features, 3)
    bb = strategy.apply(bb, head)
    assert strategy.choices()["lr"] | {"why": ""} == {"setting": lr, "used": used, "why": ""}
    assert [g["lr"] for g in strategy.param_groups(bb, head)] == [used]


def test_feature_extraction_names_its_arguments():
    """No **kwargs: a study file's misspelt strategy key is refused before a search starts (sweep._accepts)."""
    from transferlab.sweep import _accepts

    target = "transferlab.strategies.feature_extraction.FeatureExtraction"
    assert _accepts(target, "lr") and _accepts(target, "backbone_lr_mult") and not _accepts(target, "lr_mult")


def test_auto_rate_is_feature_extractions_only():
    with pytest.raises(ConfigError, match=r"strategy.lr='auto' must be a number > 0 \('auto' is feature_extraction"):
        build(group_cfg("strategy", "full"), lr="auto")
    with pytest.raises(ConfigError, match=r"strategy.lr='fast' must be 'auto' or a rate > 0"):
        build(group_cfg("strategy", "feature_extraction"), lr="fast")


def test_partial_unfreezes_top_groups_at_lower_lr():
    strategy = build(group_cfg("strategy", "partial"), trainable_groups=3, backbone_lr_mult=0.1)
    bb = copy.deepcopy(pristine_backbone("efficientnet_lite0"))
    head = nn.Linear(bb.num_features, 3)
    bb = strategy.apply(bb, head)
    layer_groups = bb.layer_groups()
    for g in layer_groups[:-3]:
        assert not any(p.requires_grad for p in g.parameters()), g.name
    for g in layer_groups[-3:]:
        assert all(p.requires_grad for p in g.parameters()), g.name
    groups = check_contract(strategy, bb, head)
    assert [g["lr"] for g in groups] == pytest.approx([strategy.lr * 0.1] * 3 + [strategy.lr])


def test_full_trains_everything_backbone_at_1e4():
    strategy = build(group_cfg("strategy", "full"))
    bb = copy.deepcopy(pristine_backbone("efficientnet_lite0"))
    head = nn.Linear(bb.num_features, 3)
    bb = strategy.apply(bb, head)
    assert all(p.requires_grad for p in bb.parameters())
    groups = check_contract(strategy, bb, head)
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups if g["name"] != "head")


def test_frozen_parts_stay_in_eval_mode():
    from transferlab.backbones.base import set_frozen_eval

    bb = copy.deepcopy(pristine_backbone("efficientnet_lite0"))
    strategy = build(group_cfg("strategy", "partial"), trainable_groups=1)
    bb = strategy.apply(bb, nn.Linear(bb.num_features, 3))
    bb.train()
    set_frozen_eval(bb)
    assert not bb.model.bn1.training and not bb.model.blocks[0].training
    assert bb.model.bn2.training  # in the top (trainable) group


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": 0}, "lr"),
        ({"backbone_lr_mult": 0}, "backbone_lr_mult"),
        ({"backbone_lr_mult": 2}, "backbone_lr_mult"),
        ({"trainable_groups": 0}, "trainable_groups"),
    ],
)
def test_bad_strategy_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build(group_cfg("strategy", "partial"), **kwargs)


def test_more_groups_than_the_backbone_has():
    strategy = build(group_cfg("strategy", "partial"), trainable_groups=99)
    bb = copy.deepcopy(pristine_backbone("efficientnet_lite0"))
    with pytest.raises(ConfigError, match="only 8 layer groups"):
        strategy.apply(bb, nn.Linear(bb.num_features, 3))
