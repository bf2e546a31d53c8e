"""TransferModule: wires a backbone, a head, a strategy and an optional adaptation objective.

It knows no variant by name: everything specific is injected. Metrics are named `split/name`:
`train/loss`, `val/acc`, and for a domain pair `val/target_acc`, `test/source_acc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from transferlab.backbones.base import Backbone
from transferlab.model.da_rng import own_stream
from transferlab.model.norm import apply_policy, running_stats_kept
from transferlab.strategies.base import Strategy


class TransferModule(L.LightningModule):
    supports_feature_cache: ClassVar[bool] = True  # features.cache_features may switch it to cached batches

    """Classification by `head(backbone(inputs))`, trained as the strategy says.

    Args:
        backbone: a `Backbone` (already prepared by `strategy.apply`).
        head: the new task head, `(B, num_features) -> (B, num_classes)`.
        strategy: decides the optimizer parameter groups and their learning rates.
        num_classes: number of target classes.
        optimizer: partial optimizer taking the parameter groups (e.g. AdamW).
        scheduler: optional `fn(optimizer, total_steps) -> lr scheduler` stepped every step.
        adaptation: optional domain-adaptation loss module:
            `adaptation(f_s, f_t, logits_s, logits_t) -> (loss, {name: value})`.
        augment: optional batch transform applied to source inputs during training only
            (e.g. augmentation imitating the target domain).
        tta: optional test-time augmentation, `tta(model, inputs) -> logits` averaged over views;
            val and test metrics are then logged both without and with it (`..._acc_tta`).
        eval_names: names of the val/test sets in dataloader order ("" = single in-domain set).
        da_forward: with an adaptation loss, how source and target batches pass through the network:
            "separate" (two passes: each domain's own batch-norm batch statistics) or "joint" (one
            concatenated pass, shared statistics, as tllib does).
        adaptation_lr_mult: learning rate of the adaptation module's parameters (the discriminator)
            as a multiple of the head's `strategy.lr`.
        da_running_stats: with an adaptation loss and separate passes, whose training batches update the running
            statistics of BN layers that normalise with batch statistics (the head's bottleneck; the backbone's
            under strategy.norm=train): "both", "source" or "target" (docs/results/da_running_stats.md).
        da_rng: "isolated": the target pass and the adaptation loss draw their own random stream (`model.da_rng`);
            "shared": the run's.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        strategy: Strategy,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        adaptation: nn.Module | None = None,
        augment: nn.Module | None = None,
        tta: Callable[..., torch.Tensor] | None = None,
        eval_names: list[str] | None = None,
        da_forward: str = "separate",
        adaptation_lr_mult: float = 1.0,
        da_running_stats: str = "both",
        da_rng: str = "isolated",
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.adaptation = backbone, head, adaptation
        self.augment, self.tta = augment, tta
        self.features_cached = False  # use_cached_features(): batches then hold backbone (prefix) features
        self._cached_suffix: nn.Module | None = None
        self.strategy, self.optimizer_fn, self.scheduler_fn = strategy, optimizer, scheduler
        self.eval_names = eval_names or [""]
        self.da_forward, self.adaptation_lr_mult = da_forward, adaptation_lr_mult
        self.da_running_stats, self.da_rng, self._rng_base = da_running_stats, da_rng, torch.initial_seed()
        self._target_val_logits: list[torch.Tensor] = []  # for the label-free validators
        self._test_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # per test set: (logits, labels)
        self.keep_test_outputs = False  # set where the run exports an adapter (strategy.exports_adapter)
        # results.json `forwards`: samples through the whole backbone, or (cached prefix) through its suffix
        self.forward_counts = {"backbone": 0, "suffix": 0}
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.eval_acc = nn.ModuleDict(
            {
                f"{split}_{i}": MulticlassAccuracy(num_classes, average="micro")
                for split in ("val", "test", "val_tta", "test_tta")
                for i in range(len(self.eval_names))
            }
        )
        self.eval_loss = nn.ModuleDict(  # mean cross-entropy per eval set, weighted by batch size; a NaN stays
            {  # NaN (torchmetrics' default drops it with a warning: a diverged run would look finite)
                f"{split}_{i}": MeanMetric(nan_strategy="disable")
                for split in ("val", "test")
                for i in range(len(self.eval_names))
            }
        )

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.head(self.features(inputs))  # (B, num_classes); batches of cached features too

    def features(self, inputs: Any) -> torch.Tensor:
        """Backbone features `(B, F)`; with the feature cache the batch already holds them (or, for a
        cached frozen prefix, its outputs, which the trainable suffix of the backbone finishes)."""
        if not self.features_cached:
            self.forward_counts["backbone"] += _batch_len(inputs)
            return self.backbone(inputs)
        suffix = self.__dict__["_cached_suffix"]
        if suffix is None:
            return inputs
        self.forward_counts["suffix"] += _batch_len(inputs)
        if self.__dict__.get("_suffix_channels_last") and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)  # as the prefix handed them over uncached
        return suffix(inputs)

    def use_cached_features(self, suffix: nn.Module | None) -> None:
        """Batches now hold cached backbone features (`suffix` None) or a frozen prefix's outputs, which
        `suffix` (the backbone's trainable rest) finishes. The suffix shares the backbone's parameters, so
        it is kept out of `_modules`: it must not appear twice in the state dict."""
        from transferlab.model.memory_format import layout_of

        self.features_cached = True
        self.__dict__["_cached_suffix"] = suffix
        self.__dict__["_suffix_channels_last"] = suffix is not None and layout_of(suffix) == "channels_last"

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.features_cached and self.__dict__["_cached_suffix"] is None:
            self.backbone.eval()  # batches hold the whole backbone's features: it never runs while training
        elif mode:  # the frozen prefix and frozen BN in eval mode (backbone_dropout); trainable BN as strategy.norm
            apply_policy(self.backbone, getattr(self.strategy, "norm", "train"), self.__dict__.get("dropout_policy"))
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning restores saved module modes after validation; re-derive which parts are frozen and
        # the BN policy every epoch (an unfreezing schedule may have changed them).
        self.train()

    # -- training -----------------------------------------------------------------------------
    def _embed(self, inputs: Any) -> torch.Tensor:
        """Backbone features through the head's bottleneck (if any): the space adaptation losses align."""
        feats = self.features(inputs)  # (B, F)
        return self.head.embed(feats) if hasattr(self.head, "embed") else feats

    def _classify(self, z: torch.Tensor) -> torch.Tensor:
        return self.head.classify(z) if hasattr(self.head, "classify") else self.head(z)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        src = batch["source"] if "source" in batch else batch
        inputs = self.augment(src["inputs"]) if self.augment is not None else src["inputs"]
        adapt = self.adaptation is not None and "target" in batch
        if adapt and self.da_forward == "joint":  # one pass: shared batch statistics (B_s + B_t, W)
            z = self._embed(torch.cat([inputs, batch["target"]["inputs"]]))
            z_s, z_t = z[: len(src["labels"])], z[len(src["labels"]) :]
        else:  # each domain's own batch statistics; da_running_stats: whose move the running averages
            stats, nets = self.da_running_stats, [self.backbone, self.head]
            with running_stats_kept(nets, adapt and stats == "target"):
                z_s = self._embed(inputs)  # (B, W)
            with running_stats_kept(nets, adapt and stats == "source"), self._target_side(adapt, 0):
                z_t = self._embed(batch["target"]["inputs"]) if adapt else None  # cached prefix/features too
        logits = self._classify(z_s)  # (B, K)
        loss = F.cross_entropy(logits, src["labels"])
        self.train_acc.update(logits.detach(), src["labels"])  # logged once per epoch (on_train_epoch_end)
        bs, log_now = len(src["labels"]), log_this_step(self._trainer)
        if log_now:  # train/cls_loss also without adaptation: the source-only control's curve in DA comparisons
            self.log("train/cls_loss", loss, batch_size=bs)
        if adapt:
            with self._target_side(adapt, 1):
                da_loss, logs = self.adaptation(z_s, z_t, logits, self._classify(z_t))
            for k, v in logs.items() if log_now else ():
                self.log(f"train/{k}", v, batch_size=bs)
            loss = loss + da_loss
        if log_now:
            self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        return loss

    def _target_side(self, adapt: bool, part: int):
        on = adapt and self.da_rng == "isolated"
        return own_stream(on, self._rng_base, self.global_step, part, self.device)

    def on_train_epoch_end(self) -> None:
        if self.train_acc.update_called:
            self.log("train/acc", self.train_acc.compute())
        self.train_acc.reset()

    # -- evaluation ---------------------------------------------------------------------------
    def _eval_step(self, split: str, batch: dict, dataloader_idx: int) -> None:
        logits = self.head(self.features(batch["inputs"]))  # (B, K)
        name = self.eval_names[dataloader_idx]
        # accuracy and loss accumulate here and are logged once per epoch (_log_eval): Lightning's self.log costs
        # ~0.7 ms a call on a CPU, as much as the step of a small head (BENCHMARKS.md P1)
        self.eval_acc[f"{split}_{dataloader_idx}"].update(logits, batch["labels"])
        loss = F.cross_entropy(logits, batch["labels"])
        self.eval_loss[f"{split}_{dataloader_idx}"].update(loss, len(batch["labels"]))
        if split == "val" and name == "target":
            self._target_val_logits.append(logits.detach().float().cpu())
        if split == "test" and self.keep_test_outputs:  # for the adapter export: no second pass over the test set
            self._test_outputs.setdefault(dataloader_idx, []).append((logits.detach().float().cpu(), batch["labels"]))
        if self.tta is not None:  # on val too: whether TTA helps is chosen there, not on test
            self.eval_acc[f"{split}_tta_{dataloader_idx}"].update(self.tta(self, batch["inputs"]), batch["labels"])

    def _log_eval(self, split: str) -> None:
        """Each eval set's epoch accuracy and mean loss (`val/acc`, `test/target_loss`, `val/acc_tta`), then reset."""
        for i, name in enumerate(self.eval_names):
            prefix = f"{split}/{name}_" if name else f"{split}/"
            metrics = {"acc": self.eval_acc[f"{split}_{i}"], "loss": self.eval_loss[f"{split}_{i}"]}
            metrics["acc_tta"] = self.eval_acc[f"{split}_tta_{i}"]
            for key, metric in metrics.items():
                if metric.update_called:
                    self.log(f"{prefix}{key}", metric.compute(), prog_bar=i == 0 and key == "acc")
                metric.reset()

    def on_validation_epoch_start(self) -> None:
        self._target_val_logits = []

    def on_test_epoch_start(self) -> None:
        self._test_outputs = {}

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def test_outputs(self) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]] | None:
        """`{eval set name: [(logits, labels) per batch]}` of the last `trainer.test` in this process, in loader
        order (None: no test ran, or `keep_test_outputs` was off); `export_peft.classification_outputs` turns
        them into what `export_peft.evaluate` reports."""
        if not self._test_outputs:
            return None
        return {self.eval_names[idx]: self._test_outputs[idx] for idx in sorted(self._test_outputs)}

    def on_validation_epoch_end(self) -> None:
        """Label-free model selection: validators of the unlabelled target val predictions (no labels read).

        Logged as `val/target_<name>` (entropy: lower is better; info_max, snd: higher); under DDP each
        process scores its own shard. First the labelled sets' accuracy and loss (`_log_eval`).
        """
        self._log_eval("val")
        if not self._target_val_logits:
            return
        from transferlab.adaptation.selection import VALIDATORS

        logits = torch.cat(self._target_val_logits)  # (N_target_val, K)
        self._target_val_logits = []
        if len(logits) < 2:
            return
        for name, (fn, _, _) in VALIDATORS.items():
            self.log(f"val/target_{name}", fn(logits), add_dataloader_idx=False)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        groups = self.strategy.param_groups(self.backbone, self.head)
        if self.adaptation is not None:
            extra = [p for p in self.adaptation.parameters() if p.requires_grad]
            if extra:  # first, so groups a schedule appends later keep their positions on resume
                groups.insert(
                    0, {"name": "adaptation", "params": extra, "lr": self.strategy.lr * self.adaptation_lr_mult}
                )
        optimizer = self.optimizer_fn(groups)
        if self.scheduler_fn is None:
            return optimizer
        scheduler = self.scheduler_fn(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def log_this_step(trainer: Any) -> bool:
    """Whether a training step's `self.log` calls are worth making: on the steps the loggers write
    (`trainer.log_every_n_steps`, the predicate Lightning's own LearningRateMonitor uses) and on an epoch's
    last batch, so `callback_metrics` (results.json) ends with the last step's values. Lightning writes
    step values only on those steps, so skipping the others changes no logged figure; it saves ~0.7 ms a
    call (BENCHMARKS.md P1). The progress bar's loss then refreshes every `log_every_n_steps` steps."""
    if trainer is None:
        return True
    connector = getattr(trainer, "_logger_connector", None)
    return connector is None or connector.should_update_logs or trainer.is_last_batch or _last_step(trainer)


def _last_step(trainer: Any) -> bool:
    return trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step + 1


def _batch_len(inputs: Any) -> int:
    """Examples in a batch of inputs: a tensor `(B, ...)` or a dict of them (tokenized text)."""
    if isinstance(inputs, torch.Tensor):
        return len(inputs)
    return len(next(iter(inputs.values()))) if isinstance(inputs, dict) and inputs else 0
