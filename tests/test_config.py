"""Every YAML in every config group composes, documents itself and builds.

The cases come from the config folders (`contracts.py`: globbed, properties read from the YAMLs and their classes),
so a new file is covered without editing a list; `test_new_files_are_picked_up` proves it on a copy of the tree.
"""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import CONF, compose
from contracts import (
    adversarial,
    backbone_input,
    backbone_kind,
    choices,
    data_traits,
    defaults,
    files,
    groups,
    is_subset,
    option,
    optional,
    partners,
    selects,
    trains_on_target,
)
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

FILES = files(CONF)


def test_every_group_has_files_and_a_default():
    chosen = defaults(CONF)
    assert set(groups(CONF)) == set(chosen), "a config group folder the primary config.yaml never chooses (or v.v.)"
    for group, default in chosen.items():
        assert list((CONF / group).glob("*.yaml")), f"conf/{group}/ is empty"
        assert default is None or default in choices(CONF, group), f"config.yaml's default {group}={default}: no file"
    assert len(FILES) >= 40


@pytest.mark.parametrize("group,name", FILES, ids=[f"{g}={n}" for g, n in FILES])
def test_composes_and_documents(group, name, tmp_path):
    text = (CONF / group / f"{name}.yaml").read_text()
    assert text.lstrip().startswith("#"), f"conf/{group}/{name}.yaml needs a header comment"
    assert "python train.py" in text, f"conf/{group}/{name}.yaml: header must show the command that runs it"
    cfg = compose([f"{group}={name}"], tmp_path)
    assert HydraConfig.get().runtime.choices[group] == name
    # the composed config holds the YAML as written (merged over the same-group files in its defaults list)
    mine = option(CONF, group, name)
    if group == "experiment":  # @package _global_: its keys land at the top; its defaults choose other groups
        assert not is_subset(mine, OmegaConf.to_container(cfg, resolve=False))
        for other, choice in selects(CONF, group, name).items():
            assert HydraConfig.get().runtime.choices[other] == choice
        return
    node = cfg.get(group)
    if not mine:
        assert not node, f"conf/{group}/{name}.yaml is empty, so {group} must be unset"
        return
    assert not is_subset(mine, OmegaConf.to_container(node, resolve=False))
    if group == "backbone":
        assert node._target_.startswith("transferlab.backbones.")
    if group == "strategy":
        strategy = instantiate(node)  # hyper-parameter validation happens in __init__
        assert strategy.lr > 0 and strategy.kinds
    if group == "adaptation":
        assert node.get("_partial_"), "adaptation configs are partials sized at run time"


@pytest.mark.parametrize("name", choices(CONF, "data"))
def test_seed_override_composes_through(name, tmp_path):
    seed = OmegaConf.load(CONF / "config.yaml").seed + 7  # anything but the default
    cfg = compose([f"data={name}", f"seed={seed}", *partners(CONF, [f"data={name}"], tmp_path)], tmp_path)
    assert cfg.seed == seed
    follows = [k for k, v in option(CONF, "data", name).items() if v == "${seed}"]
    assert follows, f"conf/data/{name}.yaml: the data's training subsample should follow the run's seed"
    assert all(cfg.data[k] == seed for k in follows)


@pytest.mark.parametrize("name", choices(CONF, "hardware"))
def test_hardware_maps_onto_lightning(name, tmp_path):
    cfg = compose([f"hardware={name}"], tmp_path)
    hw = cfg.hardware
    assert hw.accelerator in {"cpu", "gpu", "auto"}
    assert hw.precision in {"32-true", "bf16-mixed", "16-mixed", "bf16-true"}
    strategy = hw.get("strategy")
    if isinstance(strategy, str) or strategy is None:
        return
    assert instantiate(strategy).__class__.__name__.endswith("Strategy")


def test_no_group_is_optional():
    """Hydra skips a missing choice of an `optional` default: a mistyped experiment= would run without it."""
    assert optional(CONF) == []


@pytest.mark.parametrize("group", groups(CONF))
def test_unknown_choice_lists_the_options(group, tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as info:
        compose([f"{group}=no_such_{group}"], tmp_path)
    assert all(re.search(rf"\b{re.escape(n)}\b", str(info.value)) for n in choices(CONF, group)), str(info.value)


def test_unknown_key_is_refused(tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="train_per_clas"):
        compose(["data.train_per_clas=5"], tmp_path)


def _add(conf, group: str, new: str, copy_of: str) -> None:
    """conf/group/new.yaml: a copy of copy_of.yaml, its `name:` (if any) renamed."""
    text = (conf / group / f"{copy_of}.yaml").read_text()
    (conf / group / f"{new}.yaml").write_text(re.sub(r"(?m)^name: .*$", f"name: {new}", text))


def test_new_files_are_picked_up(tmp_path):
    """A YAML dropped into a group folder is collected, its properties derived, and it composes and validates."""
    from transferlab.config import validate

    conf = shutil.copytree(CONF, tmp_path / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    ready = [n for n in choices(CONF, "backbone") if "???" not in str(option(CONF, "backbone", n))]
    image = next(n for n in ready if backbone_kind(CONF, n) == "image")  # e.g. a timm backbone
    text = next(n for n in ready if backbone_kind(CONF, n) == "text")
    method = adversarial(CONF)[0]
    _add(conf, "backbone", "zz_new_image", image)
    _add(conf, "backbone", "zz_new_text", text)
    _add(conf, "adaptation", "zz_new_method", method)
    new = {("backbone", "zz_new_image"), ("backbone", "zz_new_text"), ("adaptation", "zz_new_method")}
    assert set(files(conf)) == set(FILES) | new and not new & set(FILES)
    assert backbone_kind(conf, "zz_new_image") == "image" and backbone_kind(conf, "zz_new_text") == "text"
    assert "zz_new_method" in trains_on_target(conf) and "zz_new_method" in adversarial(conf)
    for group, name in sorted(new):
        extra = partners(conf, [f"{group}={name}"], tmp_path / "run")
        cfg = compose([f"{group}={name}", *extra], tmp_path / "run", conf_dir=conf)
        assert HydraConfig.get().runtime.choices[group] == name
        assert not is_subset(option(conf, group, name), OmegaConf.to_container(cfg[group], resolve=False))
        data = data_traits(conf, HydraConfig.get().runtime.choices["data"])
        if group == "backbone":
            assert data.modality == backbone_input(conf, name)  # the text backbone got text data
            assert cfg.backbone.name == name
        else:
            assert data.has_target_domain  # the adaptation got a domain pair
        validate(cfg)


@pytest.mark.parametrize("group", ["backbone", "data"])
def test_declared_modality_matches_the_class(group):
    """`modality` in a backbone/data YAML (read before anything loads, config.modality) is what its class says."""
    declared = 0
    for name in choices(CONF, group):
        node = compose([f"{group}={name}"], "unused").get(group)
        if node.get("modality") is None:
            continue
        declared += 1
        actual = backbone_input(CONF, name) if group == "backbone" else data_traits(CONF, name).modality
        assert node.modality == actual, f"conf/{group}/{name}.yaml declares modality={node.modality}, class: {actual}"
        if group == "backbone" and node.get("default_data"):
            assert data_traits(CONF, node.default_data).modality == actual, f"{name}: default_data of another modality"
    assert declared == len(choices(CONF, group)), f"every shipped {group} YAML declares its modality"


def test_a_backbone_without_data_gets_its_default_data():
    """`backbone=llama7b strategy=lora` (no data=): the backbone's default data; an explicit data= wins."""
    from transferlab.config.modality import auto_data

    argv, note = auto_data(["strategy=lora", "backbone=llama7b"])
    assert argv[-1] == "data=instructions" and "data=digits is image data" in note
    assert auto_data(["backbone=minilm"])[0][-1] == "data=reviews"
    for same in (
        ["backbone=llama7b", "data=digits"],
        ["backbone=resnet50"],
        ["strategy=lora"],
        ["backbone=minilm,smollm2"],
    ):
        assert auto_data(same) == (same, None)
    assert auto_data(["--config-dir", "sweeps", "backbone=minilm"])[1] is None  # a study file chooses its own data
