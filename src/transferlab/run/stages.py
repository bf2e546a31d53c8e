"""The stages of a run after building: cache, trainer, fit, AdaBN, test, adapters.

Each takes what it needs and returns its own section of results.json; `transferlab.run.recipe`
calls them in order and assembles the result.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from transferlab.config.instantiate import build as instantiate
from transferlab.infra import redact, results

log = logging.getLogger("transferlab")


def feature_cache(cfg: DictConfig, strategy, module, data) -> dict:
    """Swap in cached backbone (prefix) features where exact; `feature_cache` says whether and why not."""
    if not (cfg.cache.features and module.supports_feature_cache):
        return {}
    import torch

    from transferlab.model.features import cache_features, precision_reason, run_budget, why_not
    from transferlab.model.run_device import run_device

    budget = run_budget(cfg.trainer, data)  # how far an unfreezing schedule can get: the rest stays frozen
    precision = cfg.hardware.get("precision", "32-true")
    reason = why_not(strategy, module, data, budget) or precision_reason(precision)
    stats: dict = {}
    if not reason:
        with torch.random.fork_rng(devices=[]):  # caching (its DataLoaders draw seeds) must not shift the run's RNG
            device = run_device(cfg.hardware)  # the run's own accelerator: its speed, its kernels
            stats = cache_features(module, data, cfg.cache.dir, budget=budget, precision=precision, device=device)
            stats = stats.to_dict()
    reason = reason or stats["reason"]
    return {"feature_cache": {"used": False, "reason": reason} if reason else {"used": True, **stats}}


def say_cache_plan(section: dict | None) -> None:
    """One line before training: whether the frozen part's features come from the cache, and why not."""
    if not section:
        log.info("feature cache: off (cache=off, or the module computes every forward)")
    elif section["used"]:
        log.info("feature cache: used: the frozen backbone runs once per example, not once per step")
    else:
        log.info("feature cache: not used (%s)", section["reason"])


def shift(cfg: DictConfig, module, data) -> dict | None:
    """Domain-shift diagnostics (proxy A-distance, MMD) on the backbone's current features, and (`bottleneck`) where
    the adaptation loss acts when the head has a bottleneck; computed on the run's accelerator (after `fit`
    Lightning has moved the model back to the CPU). With the feature cache the features come as training sees
    them: cached, or a cached frozen prefix's outputs through the trained suffix."""
    if not (cfg.diagnostics.enabled and data.has_target_domain):
        return None
    import torch

    from transferlab.adaptation.diagnostics import shift_report
    from transferlab.model.run_device import placed, run_device

    head = module.head if getattr(module.head, "has_bottleneck", False) else None
    counts = dict(module.forward_counts)  # diagnostics are not among results.json `forwards`
    # measuring must not change the run's random stream
    with torch.random.fork_rng(devices=[]), placed(module, run_device(cfg.hardware)):
        try:
            args = (cfg.diagnostics.max_samples, cfg.diagnostics.split)
            return shift_report(module, data, *args, fn=module.features, embed=head.embed if head else None)
        finally:
            module.forward_counts.update(counts)


def _instantiate_dict(node) -> list:
    return [instantiate(v) for v in (node or {}).values() if v is not None and "_target_" in v]


def make_trainer(cfg: DictConfig, strategy, module, data, backbone_name: str, resume_step: int | None = None):
    """(trainer, loggers, callbacks): config callbacks + the strategy's + the adaptation's + resume state.

    `resume_step`: the global step of the checkpoint being resumed; loggers that keep a history append to it.
    """
    import lightning as L

    from transferlab.callbacks.resume import AtomicCheckpointIO, ResumeState, training_settings
    from transferlab.callbacks.validated import ValidatedAt
    from transferlab.infra.loggers import HistoryCSVLogger

    loggers = _instantiate_dict(cfg.get("logger"))
    for lg in loggers:
        if isinstance(lg, HistoryCSVLogger):
            lg.resume_at(resume_step)
        if resume_step is not None and isinstance(lg, L.pytorch.loggers.MLFlowLogger):
            continue  # the resumed MLflow run has its params, and MLflow refuses changing one (results.json has all)
        lg.log_hyperparams(redact.scrub(OmegaConf.to_container(cfg, resolve=True)))
    stamp = {"backbone": backbone_name, "strategy": strategy.name, "classes": list(data.classes or [])}
    stamp["settings"] = training_settings(cfg)  # seed, strategy, optimizer, data ...: a resume must match them
    callbacks = _instantiate_dict(cfg.get("callbacks")) + strategy.callbacks() + [ResumeState(stamp), ValidatedAt()]
    if module.adaptation is not None:
        callbacks += module.adaptation.callbacks()
    if not loggers:  # LearningRateMonitor needs a logger
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    hw = OmegaConf.to_container(cfg.hardware, resolve=True)
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    # `callbacks.checkpoint: null` means no checkpoints: not Lightning's default ModelCheckpoint in its place
    settings.setdefault(
        "enable_checkpointing", any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in callbacks)
    )
    trainer = L.Trainer(
        **settings,
        **{k: instantiate(v) if isinstance(v, dict) else v for k, v in hw.items()},
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],
    )
    return trainer, loggers, callbacks


def adabn(module, data, trainer, norm: str, which_layers: str, device="cpu") -> dict:
    """Re-estimate BN statistics on unlabelled data of the evaluation domain (target train split for a domain
    pair, else the train split), then validate again so the val metrics describe the adapted model.
    `device`: where to run the passes (`run_device(cfg.hardware)`: after `fit` the model is back on the CPU)."""
    from torch.utils.data import DataLoader

    from transferlab.model.norm import batch_stat_layers, bn_layers, reestimate
    from transferlab.model.run_device import placed

    which = "target" if "target" in data.domains else "source"
    loader = DataLoader(
        data.datasets[f"{which}/train"], batch_size=data.eval_batch_size, shuffle=False, collate_fn=data.collate_fn
    )
    layers = bn_layers(module.backbone) if which_layers == "all" else batch_stat_layers(module.backbone, norm)
    head = bn_layers(module.head)  # the bottleneck's BN normalises with batch statistics whatever the policy
    device = device if layers + head else module.device  # nothing to re-estimate: no round trip
    with placed(module, device):
        stats = {"domain": which, "which": which_layers, **reestimate(module, loader, device, layers + head)}
    stats["device"] = str(device)
    stats["head_layers"] = len(head) if stats["layers"] else 0
    if stats["layers"] and data.val_dataloader():
        trainer.validate(module, datamodule=data, verbose=False)
    else:  # nothing re-estimated: the model is the fitted one, validated like any other
        validate_final(trainer, module, data)
    return stats


def validate_final(trainer, module, data) -> None:
    """Validate the final model unless the last validation already saw it: fit may end without val metrics,
    or (`max_steps` mid-epoch) with those of an earlier step, which the selection rules would then score."""
    from transferlab.callbacks.validated import validated_at

    if data.fractions[0] <= 0:
        return
    has_val = any(k.startswith("val/") for k in trainer.callback_metrics)
    if not has_val or validated_at(trainer) != trainer.global_step:
        trainer.validate(module, datamodule=data, verbose=False)


def test(cfg: DictConfig, trainer, module, data) -> dict:
    """Test metrics (with the final val metrics), the planner's prediction, training counters."""
    from transferlab.callbacks.validated import validated_at
    from transferlab.plan import predict

    metrics = dict(trainer.callback_metrics)
    plan = predict(cfg, module, data)  # predicted memory, next to the measured peak_mem_mb
    trainer.test(module, datamodule=data, verbose=False)
    metrics.update(trainer.callback_metrics)
    clean = results.clean_metrics(metrics)
    return {
        "plan": plan,
        "metrics": clean,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "val_step": validated_at(trainer),  # the global step of the model the val metrics and `selection` describe
        "selection": selection(clean, data),
    }


def selection(metrics: dict, data) -> dict | None:
    """results.json `selection`: what each model-selection rule sees, for a domain pair (else None).

    Label-free validators of the unlabelled target val predictions and the source val accuracy may
    choose hyper-parameters in unsupervised DA; `oracle` (target val accuracy) needs target labels and
    is reported only to measure what a label-free choice costs.
    """
    if "target" not in data.domains:
        return None
    from transferlab.adaptation.selection import VALIDATORS

    rules = {"source_val_acc": {"metric": "val/source_acc", "better": "higher", "needs_target_labels": False}}
    rules |= {
        name: {"metric": f"val/target_{name}", "better": better, "needs_target_labels": False}
        for name, (_, better, _) in VALIDATORS.items()
    }
    rules["oracle"] = {"metric": "val/target_acc", "better": "higher", "needs_target_labels": True}
    return {name: {**rule, "value": metrics.get(rule["metric"])} for name, rule in rules.items()}


def callback_sections(callbacks: list) -> dict:
    """Sections callbacks add after testing (`timing`, `nan_guard`, ...), one level merged."""
    from transferlab.callbacks import ReportsResult

    out: dict = {}
    for cb in callbacks:
        if isinstance(cb, ReportsResult):
            for key, value in cb.result_section().items():
                out[key] = (
                    {**out[key], **value} if isinstance(out.get(key), dict) and isinstance(value, dict) else value
                )
    return out


def adapters(strategy, module, data, trainer, out_dir: str, device="cpu") -> dict:
    """A PEFT strategy's adapter in peft format, plus the merged model re-evaluated (rank 0) on `device`
    (`run_device(cfg.hardware)`: after testing Lightning has moved the model back to the CPU)."""
    if not (strategy.exports_adapter and trainer.is_global_zero):
        return {}
    from transferlab.export_peft import classification_outputs, export_adapter
    from transferlab.model.module import TransferModule

    # a single process saw the whole test set: its outputs stand in for a second unmerged pass
    per_set = module.test_outputs() if isinstance(module, TransferModule) and trainer.world_size == 1 else None
    tested = classification_outputs(per_set) if per_set else None
    if tested is not None and len(tested[1]) != sum(len(loader.dataset) for loader in data.test_dataloader()):
        tested = None  # the test pass saw part of the test sets (trainer.limit_test_batches): evaluate them whole
    return {"adapter": export_adapter(strategy, module, data, out_dir, tested=tested, device=device)}


def forwards(module, cache: dict | None) -> dict:
    """results.json `forwards`: examples through the whole backbone (training, evaluation, export, TTA),
    through a cached prefix's trainable suffix, and through the frozen part to fill the feature cache
    (`cache_fill`, per domain; 0 on a cache hit). Domain-shift diagnostics and AdaBN passes are not counted."""
    cache = cache or {}
    return {
        **module.forward_counts,
        "cache_fill": cache.get("forwards", 0),
        "cache_fill_by_domain": cache.get("by_domain", {}),
    }
