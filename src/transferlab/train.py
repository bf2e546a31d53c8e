"""run(cfg): seed -> data -> backbone -> strategy -> adaptation -> module -> trainer -> results.json.

Every run writes `results.json` in its run dir, also when it fails (status "failed" + error).
Cheap checks (config, data sizes, classes) run before any model weights are loaded.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transferlab import redact, results
from transferlab.errors import ConfigError, DataError, TransferlabError
from transferlab.instantiate import build as instantiate

log = logging.getLogger("transferlab")


def _choice(cfg: DictConfig, group: str) -> str | None:
    """The config-group choice (e.g. strategy=lora) from Hydra's runtime, if available."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # composed without a Hydra run (tests / notebooks)
        return None


def _instantiate_dict(node) -> list:
    return [instantiate(v) for v in (node or {}).values() if v is not None and "_target_" in v]


def _quiet_lightning() -> None:
    """One log handler (Hydra's: console + run-dir file) instead of Lightning's extra ones."""
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _check_ckpt_path(cfg: DictConfig) -> None:
    """`ckpt_path` must name an existing file, or "last" with a last.ckpt in this run dir."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is None:
        return
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt" if ckpt == "last" else Path(str(ckpt))
    if not path.is_file():
        hint = (
            "ckpt_path=last resumes the run in hydra.run.dir: pass the interrupted run's dir, e.g. "
            "`hydra.run.dir=outputs/2026-01-01/12-00-00 ckpt_path=last`"
            if ckpt == "last"
            else "point ckpt_path at an existing .ckpt file"
        )
        raise ConfigError(f"ckpt_path={ckpt}: no checkpoint at '{path}'. {hint}.")


def _check_combination(cfg: DictConfig, strategy, data) -> None:
    """Group combinations that can't work, refused before any weights load."""
    objective = str(cfg.get("objective") or "")
    if objective.startswith("val/target_") and not data.has_target_domain:
        raise ConfigError(
            f"objective={objective} scores predictions on a target domain, but data={_choice(cfg, 'data')} has "
            "none: use a domain pair (e.g. data=mnist_to_digits) or objective=val/acc."
        )
    if objective.startswith("val/target_") and getattr(data, "task", None) == "instruction":
        raise ConfigError(
            f"objective={objective} needs class logits, which instruction tuning (an LM loss) does not "
            "produce; use a classification task or objective=val/loss."
        )
    if not cfg.get("adaptation"):
        return
    name = _choice(cfg, "adaptation") or "set"
    if not data.has_target_domain:
        raise ConfigError(
            f"adaptation={name} needs a data config with a target domain (e.g. data=mnist_to_digits, "
            "data=reviews_shift, or data=imagefolder with data.target_root=...); use adaptation=none "
            "for single-domain data."
        )
    if not strategy.trains:
        needs = (
            "needs class predictions from a trained head and "
            if getattr(instantiate(cfg.adaptation).func, "needs_logits", False)
            else ""
        )
        raise ConfigError(
            f"adaptation={name} {needs}trains a domain-alignment loss, but strategy {strategy.name} does "
            "not train (zero-shot). Use a training strategy (e.g. strategy=partial or lora) or adaptation=none."
        )


def _check_license(cfg: DictConfig, backbone, result: dict) -> None:
    """Resolve the backbone's licence (YAML, model metadata, package licence file) into the result; apply the policy."""
    from transferlab import licence

    result["license"] = licence.resolve(cfg.backbone.get("license"), backbone.info, cfg.backbone.get("model_id"))
    result["backbone"]["license"] = result["license"]["license"]
    licence.enforce(cfg.get("license_policy"), result["license"], backbone.info.name)


def _build(cfg: DictConfig, result: dict):
    """Data, backbone, strategy, adaptation and the LightningModule, cheapest checks first."""
    from torch import nn

    from transferlab.norm import check_batch_size, describe
    from transferlab.validate import check_data

    strategy = instantiate(cfg.strategy)  # hyper-parameter checks before anything loads
    result["stage"] = "data"
    data = instantiate(cfg.data)
    _check_combination(cfg, strategy, data)
    data.prepare()  # labels, splits, sizes -> early DataError
    check_data(strategy, data)
    result["train_size"] = data.train_size
    if getattr(data, "bad_count", 0):  # data.bad_files=skip: undecodable files dropped (with a warning)
        result["skipped_files"] = data.bad_count
    if cfg.get("translate"):  # pixel-level adaptation: source images -> target style (trained or cached translator)
        result["translate"] = instantiate(cfg.translate).apply(data, cfg.paths.output_dir)
    import torch

    result["stage"] = "backbone"
    with torch.random.fork_rng(devices=[]):  # a first-use weight conversion must not shift the head's init
        backbone = instantiate(cfg.backbone)
    result["backbone"] = backbone.info.to_dict()
    _check_license(cfg, backbone, result)  # license_policy=commercial stops here, before any training
    if backbone.preprocessing.kind != getattr(data, "modality", "image"):
        raise ConfigError(
            f"backbone '{backbone.info.name}' takes {backbone.preprocessing.kind} inputs but "
            f"data={_choice(cfg, 'data')} "
            f"is {getattr(data, 'modality', 'image')} data: pick a matching pair (e.g. backbone=minilm data=reviews)."
        )
    data.build(backbone.preprocessing)
    if getattr(data, "truncation", None):  # texts longer than backbone.max_length (warned at build)
        result["truncation"] = data.truncation
    result["stage"] = "build"
    if getattr(data, "task", None) == "instruction":  # instruction tuning: LM loss, no classification head
        from transferlab.lm_module import InstructionModule

        if cfg.get("adaptation"):
            raise ConfigError("data=instructions (instruction tuning) takes no adaptation; use adaptation=none.")
        backbone = strategy.apply(backbone, nn.Identity(), data.classes)
        result["norm"] = {**describe(backbone, strategy.norm), "reestimate": False}
        if strategy.norm == "adabn":
            log.warning("strategy.norm=adabn: a causal LM has no batch-norm layers; nothing will be re-estimated")
        return (
            strategy,
            data,
            InstructionModule(
                backbone,
                strategy,
                optimizer=instantiate(cfg.optimizer),
                scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
            ),
        )
    from transferlab.head import Head
    from transferlab.module import TransferModule

    head = Head(backbone.num_features, data.num_classes, cfg.head.dropout, cfg.head.get("bottleneck"))
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
    adaptation = None
    if cfg.get("adaptation"):  # partial config: sized once the backbone and classes are known
        adaptation = instantiate(cfg.adaptation)(num_features=head.out_features, num_classes=data.num_classes)
        data.with_target = getattr(adaptation, "needs_target", True)
        _check_loss_can_act(cfg, backbone, head, adaptation, data)
        result["adaptation_params"] = OmegaConf.to_container(cfg.adaptation, resolve=True)
        result["da"] = {
            "aligns": "bottleneck" if head.has_bottleneck else "backbone features",
            "width": head.out_features,
            **OmegaConf.to_container(cfg.da, resolve=True),
        }
    result["norm"] = {**describe(backbone, strategy.norm), "reestimate": _reestimates(strategy, adaptation)}
    module = TransferModule(
        backbone,
        head,
        strategy,
        data.num_classes,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        adaptation=adaptation,
        augment=instantiate(cfg.augment) if cfg.get("augment") else None,
        tta=instantiate(cfg.tta) if cfg.get("tta") else None,
        eval_names=data.eval_names,
        da_forward=cfg.da.forward,
        adaptation_lr_mult=cfg.da.lr_mult,
    )
    return strategy, data, module


def _check_loss_can_act(cfg: DictConfig, backbone, head, adaptation, data) -> None:
    """An alignment loss needs something trainable under it, and a joint pass needs tensor batches."""
    name = _choice(cfg, "adaptation") or type(adaptation).__name__
    if data.with_target and not head.has_bottleneck and not any(p.requires_grad for p in backbone.parameters()):
        raise ConfigError(
            f"adaptation={name} aligns backbone features, but strategy={_choice(cfg, 'strategy') or 'this strategy'} "
            "freezes the whole backbone: the loss could move nothing and would only train its discriminator. "
            "Add a trainable bottleneck for it to act on (head.bottleneck=256), or train part of the backbone "
            "(e.g. strategy=partial)."
        )
    n_target = len(data.domains["target"].train) if data.with_target and "target" in data.domains else None
    if n_target is not None and n_target < data.batch_size:
        raise DataError(
            f"the target domain's training split has {n_target} images, fewer than one batch "
            f"(data.batch_size={data.batch_size}): every step would reuse the same few target images. "
            "Add unlabelled target data, or lower data.batch_size."
        )
    if cfg.da.forward == "joint" and getattr(data, "modality", "image") != "image":
        raise ConfigError(
            f"da.forward=joint concatenates source and target inputs, which {getattr(data, 'modality', '?')} "
            "batches of different lengths can't do; use da.forward=separate."
        )


def _reestimates(strategy, adaptation) -> bool:
    """AdaBN after training: `strategy.norm=adabn` or `adaptation=adabn`."""
    return strategy.norm == "adabn" or bool(getattr(adaptation, "reestimates_bn", False))


def _adabn(module, data, trainer, norm: str, which_layers: str) -> dict:
    """Re-estimate BN statistics on unlabelled data of the evaluation domain (target train split for a domain
    pair, else the train split), then validate again so the val metrics describe the adapted model."""
    from torch.utils.data import DataLoader

    from transferlab.norm import batch_stat_layers, reestimate

    which = "target" if "target" in data.domains else "source"
    loader = DataLoader(
        data.datasets[f"{which}/train"], batch_size=data.eval_batch_size, shuffle=False, collate_fn=data.collate_fn
    )
    layers = None if which_layers == "all" else batch_stat_layers(module.backbone, norm)
    stats = {"domain": which, "which": which_layers, **reestimate(module.backbone, loader, module.device, layers)}
    if stats["layers"] and data.val_dataloader():
        trainer.validate(module, datamodule=data, verbose=False)
    return stats


def _selection(metrics: dict, data) -> dict | None:
    """results.json `selection`: what each model-selection rule sees, for a domain pair (else None).

    Label-free validators of the unlabelled target val predictions and the source val accuracy may
    choose hyper-parameters in unsupervised DA; `oracle` (target val accuracy) needs target labels and
    is reported only to measure what a label-free choice costs.
    """
    if "target" not in getattr(data, "domains", {}):
        return None
    from transferlab.adaptation.selection import VALIDATORS

    rules = {"source_val_acc": {"metric": "val/source_acc", "better": "higher", "needs_target_labels": False}}
    rules |= {
        name: {"metric": f"val/target_{name}", "better": better, "needs_target_labels": False}
        for name, (_, better, _) in VALIDATORS.items()
    }
    rules["oracle"] = {"metric": "val/target_acc", "better": "higher", "needs_target_labels": True}
    return {name: {**rule, "value": metrics.get(rule["metric"])} for name, rule in rules.items()}


def _shift(cfg: DictConfig, module, data) -> dict | None:
    """Domain-shift diagnostics (proxy A-distance, MMD) on the backbone's current features."""
    if not (cfg.diagnostics.enabled and data.has_target_domain and not getattr(module, "features_cached", False)):
        return None
    import torch

    from transferlab.adaptation.diagnostics import shift_report

    with torch.random.fork_rng(devices=[]):  # measuring must not change the run's random stream
        return shift_report(module.backbone, data, cfg.diagnostics.max_samples, cfg.diagnostics.split)


def _trainer(cfg: DictConfig, strategy, module, data, backbone_name: str):
    """Loggers, callbacks (config + strategy + adaptation + resume state) and the Lightning Trainer."""
    import lightning as L

    from transferlab.callbacks.resume import AtomicCheckpointIO, ResumeState

    loggers = _instantiate_dict(cfg.get("logger"))
    for lg in loggers:
        lg.log_hyperparams(redact.scrub(OmegaConf.to_container(cfg, resolve=True)))
    stamp = {"backbone": backbone_name, "strategy": strategy.name, "classes": list(data.classes or [])}
    callbacks = _instantiate_dict(cfg.get("callbacks")) + strategy.callbacks() + [ResumeState(stamp)]
    adaptation = getattr(module, "adaptation", None)
    if adaptation is not None and hasattr(adaptation, "callbacks"):
        callbacks += adaptation.callbacks()
    if not loggers:  # LearningRateMonitor needs a logger
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    hw = OmegaConf.to_container(cfg.hardware, resolve=True)
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        **{k: instantiate(v) if isinstance(v, dict) else v for k, v in hw.items()},
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],
    )
    return trainer, loggers, callbacks


def _fit_and_test(cfg: DictConfig, result: dict) -> None:
    import lightning as L

    from transferlab.plan import predict
    from transferlab.strategies.peft_base import count_params

    _quiet_lightning()
    _check_ckpt_path(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    strategy, data, module = _build(cfg, result)
    result["shift_before"] = _shift(cfg, module, data)
    if cfg.cache.features and hasattr(module, "features_cached"):
        from transferlab.features import cache_features, why_not

        reason = why_not(strategy, module, data)
        import torch

        with torch.random.fork_rng(devices=[]):  # caching (its DataLoaders draw seeds) must not shift the run's RNG
            stats = None if reason else cache_features(module, data, cfg.cache.dir).to_dict()
        reason = reason or stats["reason"]
        result["feature_cache"] = {"used": False, "reason": reason} if reason else {"used": True, **stats}
    result["params"] = count_params(module)  # on the (peft-)wrapped model; 4-bit weights at their logical size
    trainer, loggers, callbacks = _trainer(cfg, strategy, module, data, result["backbone"]["name"])
    if result.get("translate"):
        from transferlab.translate.grid import log_grid

        log_grid(loggers, result["translate"]["grid"])
    try:
        result["stage"] = "fit"
        if strategy.trains:
            trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"))
        if result.get("norm", {}).get("reestimate"):
            result["stage"] = "adabn"
            result["norm"]["adabn"] = _adabn(
                module, data, trainer, strategy.norm, getattr(module.adaptation, "layers", "batch_stat")
            )
        elif (
            strategy.trains
            and not any(k.startswith("val/") for k in trainer.callback_metrics)
            and getattr(data, "fractions", (0,))[0] > 0
        ):  # e.g. max_steps ended fit mid-epoch: validate the final model
            trainer.validate(module, datamodule=data, verbose=False)
        result["stage"] = "test"
        metrics = dict(trainer.callback_metrics)
        result["plan"] = predict(cfg, module, data)  # predicted memory, next to the measured peak_mem_mb
        trainer.test(module, datamodule=data, verbose=False)
        metrics.update(trainer.callback_metrics)
        result.update(
            metrics=results.clean_metrics(metrics),
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
            world_size=trainer.world_size,
        )
        result["shift_after"] = _shift(cfg, module, data) or result["shift_before"]
        result["selection"] = _selection(result["metrics"], data)
        for cb in callbacks:
            if hasattr(cb, "summary"):
                result.setdefault("timing", {}).update(cb.summary())
            if hasattr(cb, "report"):  # e.g. NanGuard: policy and skipped steps
                result.update(cb.report())
        if getattr(strategy, "saves_adapter", False) and strategy.trains and trainer.is_global_zero:
            from transferlab.export_peft import export_adapter  # adapter in peft format + merged re-evaluation

            result["adapter"] = export_adapter(strategy, module, data, cfg.paths.output_dir)
    finally:
        for lg in loggers:
            lg.finalize("success")
            if type(lg).__name__ == "WandbLogger":
                lg.experiment.finish()


def _tree(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (unresolved where it can't resolve: validate() says why)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception:  # e.g. a missing ${oc.env:...}; reported by validate()
        return OmegaConf.to_container(cfg, resolve=False)


def _failure(e: BaseException, stage: str | None) -> dict:
    """results.json `failure`: where it stopped and why (config / data / weights / training / interrupted)."""
    details = dict(getattr(e, "details", None) or {})
    if not isinstance(e, Exception):
        reason = "interrupted"
    elif isinstance(e, TransferlabError):
        reason = type(e).__name__.removesuffix("Error").lower()
    else:
        reason = "unexpected"
    return {"stage": stage, "reason": details.pop("reason", reason), **details}


def run(cfg: DictConfig) -> dict:
    """Run one experiment from a composed config and return its result (also written to disk).

    The config is validated first (`transferlab.validate`): nothing is loaded for a config that can't run.
    """
    from transferlab.validate import validate

    start = time.time()
    out_dir = Path(cfg.paths.output_dir)
    tree = _tree(cfg)
    redact.register(tree)  # secret-named config values are masked in results, logger params and logs
    redact.install_log_filter()
    result: dict = {
        "status": "running",
        "strategy": _choice(cfg, "strategy") or cfg.strategy.get("_target_", "").rsplit(".", 1)[-1],
        "adaptation": _choice(cfg, "adaptation"),
        "data": _choice(cfg, "data"),
        "seed": cfg.seed,
        "train_per_class": cfg.data.get("train_per_class"),
        "config": tree,
        "stage": "validate",
    }
    try:
        validate(cfg)
        _fit_and_test(cfg, result)
        result["status"] = "ok"
    except BaseException as e:
        reason = str(e) or ("interrupted (signal or Ctrl-C)" if not isinstance(e, Exception) else "no message")
        result.update(status="failed", error=f"{type(e).__name__}: {reason}", failure=_failure(e, result.get("stage")))
        raise
    finally:
        result.pop("stage", None)
        result["time_s"] = round(time.time() - start, 2)
        result["peak_mem_mb"] = round(results.peak_memory_mb(), 1)
        if results.is_rank_zero():
            path = results.write(result, out_dir)
            print(f"\ntransferlab result ({path}):\n{redact.scrub_text(results.summary(result))}", file=sys.stderr)
    return result


def main(cfg: DictConfig) -> dict | None:
    """Entry used by `train.py`: user errors become one clear message, not a traceback.

    In a multirun, a failed job is recorded (results.json says failed) and the sweep goes on, and a
    job that already finished ok in this sweep dir is skipped (`transferlab.sweep`). With
    `objective: <metric>` in the config (Optuna studies) the return value is that metric (NaN if failed).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from transferlab.sweep import check_study, objective_value, skip_finished

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    redact.register(_tree(cfg))
    redact.install_log_filter()
    redact.scrub_files(Path(HydraConfig.get().runtime.output_dir) / ".hydra")  # Hydra saved the overrides as given
    if cfg.plan.enabled:  # the planner: architecture only, nothing loaded or trained
        from transferlab.plan import main as plan_main

        sys.exit(plan_main([a for a in HydraConfig.get().overrides.task if not a.startswith("plan.enabled")]))
    try:
        check_study(cfg)
        result = skip_finished(cfg) or run(cfg)
    except TransferlabError as e:
        if not multirun:
            print(f"\nerror: {redact.scrub_text(str(e))}", file=sys.stderr)
            sys.exit(2)
        log.error("job failed: %s", e)
        result = None
    except Exception:
        if not multirun:
            raise
        log.exception("job failed")
        result = None
    return objective_value(result, cfg.get("objective")) if cfg.get("objective") else result
