"""Stop (or skip) a training step whose loss or gradients are not finite, before it touches the weights.

One NaN in a sweep otherwise trains on silently (every later metric NaN) and, worse, is written into
`last.ckpt` at the epoch end, replacing the last good checkpoint. The guard looks at the loss before
backward and at the gradients before the optimizer step:

- `policy: stop` raises `TrainingError` from `on_before_optimizer_step`, so the bad update is never
  applied and Lightning's epoch-end checkpoint never runs: the last checkpoint on disk is the last good
  one. The message names the step and the likely causes; results.json records the failure.
- `policy: skip` drops the step's gradients (the optimizer skips parameters without a gradient) and
  puts back the running statistics its forward passes moved (BN layers normalising with batch statistics
  fold every batch in, a NaN one too), then goes on; after `max_skips` skipped steps it stops as above.

Whatever the policy, a checkpoint whose weights are not finite is refused (`on_save_checkpoint`).
"""

from __future__ import annotations

import logging
from typing import Literal

import lightning as L
import torch

from transferlab.errors import ConfigError, TrainingError

log = logging.getLogger("transferlab")


class NanGuard(L.Callback):
    """Guards training against non-finite losses, gradients and checkpoints.

    Args:
        policy: "stop" the run at the first bad step, or "skip" bad steps (no update).
        max_skips: with "skip", stop once this many steps were skipped (the run is likely diverging).
        check_grads: also check the gradient norm before each update (skipped under fp16 AMP, whose grad
            scaler already skips overflowing steps by design). "auto" (default): with "skip", where it is what
            lets a step with a finite loss but non-finite gradients be dropped; not with "stop", where such an
            update makes the next step's loss non-finite, which stops the run there, and a checkpoint with
            non-finite weights is refused, so nothing non-finite is written either way. The check reads every
            gradient: ~3 ms a step for EfficientNet-Lite0 on a CPU, 2-5 % of its step (BENCHMARKS.md P1).
    """

    def __init__(
        self, policy: Literal["stop", "skip"] = "stop", max_skips: int = 10, check_grads: bool | str = "auto"
    ) -> None:
        if policy not in ("stop", "skip"):
            raise ConfigError(f"callbacks.nan_guard.policy='{policy}' must be 'stop' or 'skip'.")
        if max_skips < 0:
            raise ConfigError(f"callbacks.nan_guard.max_skips={max_skips} must be >= 0.")
        if check_grads not in ("auto", True, False):
            raise ConfigError(f"callbacks.nan_guard.check_grads={check_grads!r} must be auto, true or false.")
        self.policy, self.max_skips = policy, max_skips
        self.check_grads = policy == "skip" if check_grads == "auto" else bool(check_grads)
        self.skipped: list[int] = []
        self._bad_loss: float | None = None
        self._batch_idx = 0
        self._stats: list[tuple[torch.Tensor, torch.Tensor]] = []  # (running-stat buffer, its value before the step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch_idx = batch_idx
        if self.policy == "skip" and batch_idx % max(1, trainer.accumulate_grad_batches) == 0:
            self._stats = [(b, b.clone()) for b in running_stats(pl_module)]  # a step's first micro-batch

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if self._bad_loss is None and not torch.isfinite(loss.detach()).all():
            self._bad_loss = float(loss.detach().float().sum())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        what, reason = None, None
        if self._bad_loss is not None:
            what, reason = f"the loss is {self._bad_loss}", "non_finite_loss"
        elif self.check_grads and "16-mixed" not in str(trainer.precision):
            grads = [p.grad.detach() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if grads:  # one fused call per dtype/device group: ~0.3 ms a step less than a per-tensor loop
                norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32)))
                if not torch.isfinite(norm):
                    what, reason = f"the gradient norm is {float(norm)}", "non_finite_gradients"
        self._bad_loss = None
        # every process takes the same decision (losses are per process); the collective runs on all of them
        if (
            trainer.world_size > 1
            and trainer.strategy.reduce_boolean_decision(what is not None, all=False)
            and what is None
        ):
            what, reason = "the loss or gradients of another process are not finite", "non_finite_loss"
        if what is None:
            return
        step = trainer.global_step
        if self.policy == "skip" and len(self.skipped) < self.max_skips:
            optimizer.zero_grad(set_to_none=True)  # optimizers skip parameters without a gradient: no update
            for buffer, before in self._stats:  # the bad batch's statistics out of the BN layers again
                buffer.copy_(before)
            self.skipped.append(step)
            log.warning(
                "step %d: %s; step skipped (callbacks.nan_guard.policy=skip, %d of at most %d)",
                step,
                what,
                len(self.skipped),
                self.max_skips,
            )
            return
        self._stop(trainer, step, what, reason)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        bad = [
            k
            for k, v in checkpoint.get("state_dict", {}).items()
            if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            self._stop(
                trainer,
                trainer.global_step,
                f"the weights are not finite ({bad[0]} ...); checkpoint not written",
                "non_finite_weights",
            )

    def _stop(self, trainer, step: int, what: str, reason: str):
        ckpt = (
            getattr(trainer.checkpoint_callback, "last_model_path", "")
            or getattr(trainer.checkpoint_callback, "best_model_path", "")
            or None
        )
        groups = [(g["lr"], g.get("name", "")) for opt in trainer.optimizers for g in opt.param_groups]
        top_lr, top_name = max(groups, key=lambda g: g[0]) if groups else (float("nan"), "")
        knob = {"backbone.peft": "strategy.peft_lr", "adaptation": "da.lr_mult"}.get(top_name, "strategy.lr")
        skipped = f" after {len(self.skipped)} skipped steps" if self.skipped else ""
        raise TrainingError(
            f"training stopped at step {step} (epoch {trainer.current_epoch}, batch "
            f"{self._batch_idx}){skipped}: {what}. "
            "The step was not applied. Likely causes: a learning rate too high (largest now "
            f"{top_lr:g}{f' in {top_name}' if top_name else ''}; lower {knob}), "
            + (
                f"overflow in reduced precision (precision={trainer.precision}; try 32-true or bf16-mixed), "
                if "16" in str(trainer.precision)
                else ""
            )
            + "or non-finite values in the data (inputs, labels). "
            + (
                f"Last good checkpoint: {ckpt} (resume with ckpt_path={ckpt}). "
                if ckpt
                else "No checkpoint was written before it. "
            )
            + "callbacks.nan_guard.policy=skip skips such steps instead.",
            details={
                "reason": reason,
                "step": step,
                "epoch": trainer.current_epoch,
                "last_checkpoint": ckpt,
                "skipped_steps": list(self.skipped),
            },
        )

    def result_section(self) -> dict:
        return self.report()

    def report(self) -> dict:
        """What goes into results.json (`nan_guard`)."""
        return {
            "nan_guard": {"policy": self.policy, "check_grads": self.check_grads, "skipped_steps": list(self.skipped)}
        }


def running_stats(module: torch.nn.Module) -> list[torch.Tensor]:
    """The running-statistics buffers of `module`'s batch-norm layers (means, variances, batch counts)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    names = ("running_mean", "running_var", "num_batches_tracked")
    return [
        b
        for m in module.modules()
        if isinstance(m, _BatchNorm)
        for b in (getattr(m, n) for n in names)
        if b is not None
    ]
