"""Building a run's parts, cheapest checks first: data, backbone, and the model around them.

`build_model(cfg)` is the public way to get the LightningModule of a config (the run, `export` and
tools use it); each step returns its own section of results.json instead of writing into a shared
dict. Nothing here trains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.config import rules
from transferlab.config.instantiate import build as instantiate
from transferlab.config.schema import target_class

log = logging.getLogger("transferlab")


@dataclass
class Built:
    """What `build_model` returns: the parts of a run and the result sections building them produced."""

    strategy: Any
    data: Any
    module: Any
    sections: dict = field(default_factory=dict)


def build_data(cfg: DictConfig) -> tuple[Any, Any, dict]:
    """(strategy, data, section): hyper-parameter checks, then labels/splits/sizes; no weights loaded."""
    strategy = instantiate(cfg.strategy)  # its own hyper-parameter checks before anything loads
    adaptation_cls = target_class(OmegaConf.to_container(cfg.adaptation)) if cfg.get("adaptation") else None
    with_target = bool(adaptation_cls is not None and adaptation_cls.needs_target)
    da = cfg.get("da") or {}
    data = instantiate(
        cfg.data, with_target=with_target, da_epoch=da.get("epoch", "source"), da_rng=da.get("rng", "isolated")
    )
    rules.check_parts(str(cfg.get("objective") or ""), strategy, data, adaptation_cls)
    data.prepare()  # labels, splits, sizes -> early DataError
    rules.check_classes(strategy, data)
    section: dict = {"train_size": data.train_size}
    if data.bad_count:  # data.bad_files=skip: undecodable files dropped (with a warning)
        section["skipped_files"] = data.bad_count
    return strategy, data, section


def build_backbone(cfg: DictConfig) -> tuple[Any, dict]:
    """(backbone, section): weights loaded and their licence resolved (`check_inputs` enforces it)."""
    import torch

    from transferlab.infra import licence

    with torch.random.fork_rng(devices=[]):  # a first-use weight conversion must not shift the head's init
        backbone = instantiate(cfg.backbone)
    lic = licence.resolve(cfg.backbone.get("license"), backbone.info, cfg.backbone.get("model_id"))
    return backbone, {"backbone": {**backbone.info.to_dict(), "license": lic["license"]}, "license": lic}


def check_inputs(cfg: DictConfig, backbone, data, license: dict) -> dict:
    """Licence policy, then the data built for the backbone's inputs and their sanity checked (`data.sanity`);
    returns the `input_check` and `truncation` sections."""
    from transferlab.infra import licence

    licence.enforce(cfg.get("license_policy"), license, backbone.info.name)  # before any training
    rules.check_modality(backbone.info.kind, data.modality, backbone.info.name, rules.choice("data"))
    data.build(backbone.preprocessing)
    from transferlab.data import sanity

    section = sanity.check(data)  # decoded training inputs: blank, all-identical, a class of one input
    if data.truncation:
        section["truncation"] = data.truncation  # texts longer than max_length
    return section


def _determinism(cfg: DictConfig) -> dict:
    """results.json `determinism`, and torch's `fill_uninitialized_memory` as the config says.

    With `trainer.deterministic=true` torch also fills every new uninitialised tensor (activations, gradients)
    with NaN, a debugging aid for ops that would read memory they did not write: 5-7 % of a CPU training step of
    EfficientNet-Lite0 and 14 % of its evaluation (BENCHMARKS.md P1). The ops transferlab runs write all of it,
    so the results are the same (tests/test_determinism.py).
    """
    import torch
    from lightning.pytorch.trainer.connectors.accelerator_connector import _set_torch_flags

    # The flags Lightning's Trainer sets from `trainer.deterministic` / `trainer.benchmark`, set here already by its
    # own function: the feature cache fills and the shift diagnostics measure before the Trainer exists, and a warm
    # sweep worker would otherwise run them under the previous job's flags (on a GPU: cuDNN's autotuned,
    # nondeterministic kernels for cached features that a run reads back as its inputs). A null leaves a flag as it
    # is, so both start from a fresh process's values first.
    det = cfg.trainer.get("deterministic")
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = False
    _set_torch_flags(deterministic=det, benchmark=cfg.trainer.get("benchmark"))
    fill = bool(cfg.get("fill_uninitialized_memory", False))
    torch.utils.deterministic.fill_uninitialized_memory = fill  # process-wide: set for every run (warm workers)
    return {"deterministic": det, "fill_uninitialized_memory": fill}


def build_module(cfg: DictConfig, strategy, data, backbone) -> tuple[Any, dict]:
    """(LightningModule, section): the strategy applied, head and adaptation attached, norm policy set."""
    from torch import nn

    from transferlab.model.norm import check_batch_size, describe

    determinism = _determinism(cfg)
    if data.lm_task:  # instruction tuning: LM loss, no classification head
        from transferlab.model.lm_module import InstructionModule

        backbone = strategy.apply(backbone, nn.Identity(), data.classes)
        if strategy.norm == "adabn":
            log.warning("strategy.norm=adabn: a causal LM has no batch-norm layers; nothing will be re-estimated")
        optimizer, opt_section = _optimizer(cfg)
        module = InstructionModule(backbone, strategy, optimizer, _scheduler(cfg))
        norm = {**describe(backbone, strategy.norm), "reestimate": False}
        section = {"norm": norm, "optimizer": opt_section, "determinism": determinism}
        section["dropout"] = _dropout(cfg, module, data, lambda bb, b: bb.lm(b["input_ids"], b["attention_mask"]))
        return module, {**section, "strategy_choices": strategy.choices()}
    from transferlab.model.head import Head
    from transferlab.model.module import TransferModule

    head = Head(backbone.num_features, data.num_classes, cfg.head.dropout, cfg.head.get("bottleneck"))
    layout, crop = _kernels(cfg, backbone)  # before the strategy adds its (contiguous) modules
    backbone = strategy.apply(backbone, head, data.classes)
    if backbone.info.source == "random-init" and any(not p.requires_grad for p in backbone.parameters()):
        log.warning(
            "backbone '%s' is randomly initialised (no pretrained weights) but strategy %s freezes part of it: "
            "those layers stay random. Train it whole (strategy=full) unless that is the point.",
            backbone.info.name,
            strategy.name,
        )
    may_train = [p for g in strategy.may_train_groups(backbone) for p in g.parameters()]
    check_batch_size(strategy.norm, backbone, may_train, min(data.batch_size, data.train_size))
    adaptation, section = _adaptation(cfg, head, data)
    rules.check_model(backbone, head, adaptation, data)
    reestimate = strategy.norm == "adabn" or (adaptation is not None and adaptation.reestimates_bn)
    section["norm"] = {**describe(backbone, strategy.norm), "reestimate": reestimate}
    section |= {"memory_format": layout, "depthwise_crop": crop, "determinism": determinism}
    section["strategy_choices"] = strategy.choices()
    optimizer, section["optimizer"] = _optimizer(cfg)
    module = TransferModule(
        backbone,
        head,
        strategy,
        data.num_classes,
        optimizer=optimizer,
        scheduler=_scheduler(cfg),
        adaptation=adaptation,
        augment=instantiate(cfg.augment) if cfg.get("augment") else None,
        tta=instantiate(cfg.tta) if cfg.get("tta") else None,
        eval_names=data.eval_names,
        da_forward=cfg.da.forward,
        adaptation_lr_mult=cfg.da.lr_mult,
        da_running_stats=cfg.da.running_stats,
        da_rng=cfg.da.get("rng", "isolated"),
    )
    module.keep_test_outputs = strategy.exports_adapter  # export_peft reuses the test pass
    section["dropout"] = _dropout(cfg, module, data)
    return module, section


def _kernels(cfg: DictConfig, backbone) -> tuple[dict, dict]:
    """The backbone's memory layout and depthwise kernels for this accelerator, applied: their sections."""
    from transferlab.model import depthwise_crop, memory_format

    accelerator = cfg.hardware.get("accelerator", "cpu")
    layout = memory_format.choose(cfg.get("memory_format") or "auto", backbone, accelerator)  # null: the default
    memory_format.apply(backbone, layout["used"])
    crop = depthwise_crop.choose(cfg.get("depthwise_crop", "auto"), backbone, accelerator)
    if crop["used"]:
        depthwise_crop.apply(backbone)
    return layout, crop


def _dropout(cfg: DictConfig, module, data, forward=None) -> dict:
    """Attach the `backbone_dropout` policy (with the backbone's traced forward order); its results.json section."""
    from transferlab.model.dropout import build_policy

    policy = build_policy(cfg.get("backbone_dropout") or "after_trainable", module.backbone, data, forward)
    module.__dict__["dropout_policy"] = policy  # not a sub-module, not in the state dict
    was = module.training
    module.train()  # the modes training starts in, counted
    section = policy.describe(module.backbone)
    module.train(was)
    return section


def _optimizer(cfg: DictConfig) -> tuple[Any, dict]:
    """The optimizer partial with its kernel chosen (`fused_optimizer`, transferlab.model.optim) and its section."""
    from transferlab.model import optim

    accelerator = cfg.hardware.get("accelerator", "cpu")
    return optim.choose(instantiate(cfg.optimizer), cfg.optimizer, cfg.get("fused_optimizer", False), accelerator)


def _scheduler(cfg: DictConfig):
    return instantiate(cfg.scheduler) if cfg.get("scheduler") else None


def _adaptation(cfg: DictConfig, head, data) -> tuple[Any, dict]:
    """The adaptation loss sized for the head (None without `adaptation=`) and its result sections."""
    if not cfg.get("adaptation"):
        return None, {}
    import torch

    from transferlab.model.da_rng import own_stream

    isolated = cfg.da.get("rng", "isolated") == "isolated"  # its random init leaves the run's stream as it was
    with own_stream(isolated, torch.initial_seed(), -1, 0, torch.device("cpu")):
        adaptation = instantiate(cfg.adaptation)(num_features=head.out_features, num_classes=data.num_classes)
    aligns = "bottleneck" if head.has_bottleneck else "backbone features"
    return adaptation, {
        "adaptation_params": OmegaConf.to_container(cfg.adaptation, resolve=True),
        "da": {"aligns": aligns, "width": head.out_features, **OmegaConf.to_container(cfg.da, resolve=True)},
    }


def build_model(cfg: DictConfig, translate_dir: str | None = None) -> Built:
    """The strategy, datamodule and LightningModule of `cfg` (weights loaded, nothing trained).

    `translate_dir`: run the pixel-level translation stage (`translate=...`) with its outputs there;
    None skips it (an export or a tool needs the model, not the translated training images).
    """
    strategy, data, sections = build_data(cfg)
    if translate_dir is not None and cfg.get("translate"):  # source images -> target style, before any dataset
        sections["translate"] = instantiate(cfg.translate).apply(data, translate_dir)
    backbone, section = build_backbone(cfg)
    sections |= section | check_inputs(cfg, backbone, data, section["license"])
    module, section = build_module(cfg, strategy, data, backbone)
    return Built(strategy, data, module, sections | section)
