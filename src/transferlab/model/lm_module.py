"""InstructionModule: instruction tuning of a causal LM, loss on response tokens only.

Metrics (`split/name`): `train/loss`, `val/loss`, `test/loss` (mean cross-entropy per response
token), `*/token_acc` (next-token argmax accuracy on response tokens, teacher-forced) and
`*/exact_match` (share of examples whose every response token is the argmax: exactly the examples
greedy decoding would answer correctly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch

from transferlab.model.module import log_this_step
from transferlab.strategies.base import Strategy


def response_metrics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct response tokens, examples with all response tokens correct), both as float sums.

    Shape:
        logits `(B, T', V)` with `T' >= T` (soft-prompt positions first), labels `(B, T)`.
    """
    logits = logits[:, -labels.shape[1] :]  # (B, T, V)
    pred, tgt = logits[:, :-1].argmax(-1), labels[:, 1:]  # (B, T-1): position t predicts token t+1
    mask = tgt != -100
    hit = (pred == tgt) & mask
    exact = (hit.sum(1) == mask.sum(1)) & (mask.sum(1) > 0)
    return hit.sum().float(), exact.sum().float()


class InstructionModule(L.LightningModule):
    supports_feature_cache: ClassVar[bool] = False  # an LM loss over every token: nothing to cache

    """Causal-LM fine-tuning on prompt/response batches (see `data.instructions`).

    Args:
        backbone: an `HFCausalLM` (possibly wrapped by a PEFT strategy).
        strategy: gives the optimizer parameter groups.
        optimizer: partial optimizer taking the parameter groups.
        scheduler: optional `fn(optimizer, total_steps)` stepped every step.
    """

    def __init__(
        self,
        backbone,
        strategy: Strategy,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.strategy = backbone, torch.nn.Identity(), strategy
        self.adaptation, self.features_cached = None, False  # the TransferModule fields readers ask for
        self.optimizer_fn, self.scheduler_fn = optimizer, scheduler
        self._sums: dict[str, torch.Tensor] = {}
        self.forward_counts = {"backbone": 0, "suffix": 0}  # results.json `forwards`

    def train(self, mode: bool = True):
        super().train(mode)
        policy = self.__dict__.get("dropout_policy")  # backbone_dropout (transferlab.model.dropout)
        if mode and policy is not None:
            policy.apply(self.backbone)
        return self

    def forward(self, batch: dict):
        self.forward_counts["backbone"] += len(batch["input_ids"])
        return self.backbone.lm(batch["input_ids"], batch["attention_mask"], batch["labels"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        if log_this_step(self._trainer):  # the steps the loggers write (and an epoch's last)
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def _eval_step(self, split: str, batch: dict) -> None:
        out = self(batch)
        n_tok = (batch["labels"][:, 1:] != -100).sum().float()
        hit, exact = response_metrics(out.logits, batch["labels"])
        for k, v in (
            ("loss", out.loss * n_tok),
            ("tokens", n_tok),
            ("hit", hit),
            ("exact", exact),
            ("n", torch.tensor(float(len(batch["labels"])))),
        ):
            self._sums[k] = self._sums.get(k, 0) + v.detach()

    def _eval_end(self, split: str) -> None:
        s, self._sums = self._sums, {}
        if not s:
            return
        tokens = s["tokens"].clamp(min=1)
        self.log(f"{split}/loss", s["loss"] / tokens, prog_bar=True)
        self.log(f"{split}/token_acc", s["hit"] / tokens)
        self.log(f"{split}/exact_match", s["exact"] / s["n"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_optimizers(self):
        groups = [g for g in self.strategy.param_groups(self.backbone, self.head) if g["params"]]
        optimizer = self.optimizer_fn(groups)
        if self.scheduler_fn is None:
            return optimizer
        scheduler = self.scheduler_fn(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
