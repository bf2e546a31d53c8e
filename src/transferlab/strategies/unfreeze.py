"""ProgressiveUnfreezing: the schedule of `strategies.progressive.Progressive`, resume- and DDP-safe.

Unlike Lightning's BaseFinetuning (issues #6891, #8502, #20340), the unfrozen set is a function of
`trainer.current_epoch` / `trainer.global_step`, and the count is restored *before* the optimizer is
built, so a resumed run has the same parameter groups, learning rates and frozen layers.
"""

from __future__ import annotations

from typing import Protocol

import lightning as L
import torch

from transferlab.errors import ConfigError


class Schedule(Protocol):
    """What the callback drives: `Progressive` hands itself over (no import of it here, no circle)."""

    unit: str
    warmup_steps: int
    norm: str

    @property
    def unfrozen(self) -> int: ...

    def target(self, t: int) -> int: ...

    def join_next(self) -> int: ...

    def restore(self, unfrozen: int) -> None: ...

    def group_lr(self, depth_from_top: int) -> float: ...


class ProgressiveUnfreezing(L.Callback):
    """Unfreezes layer groups top-down on the strategy's schedule and adds them to the optimizer.

    A joined group follows the run's LR scheduler like the head: the scheduler is extended to it
    (`schedules.add_group`; a scheduler that can't be is refused at fit start) and its LR is
    `group_lr(k)` x the schedule's multiplier x its own warm-up ramp. Logs `train/unfrozen_groups` and
    `train/lr/<group>` for every optimizer group. results.json gets what was true at the end of training
    (`result_section`): `params_final` and `unfrozen`.
    """

    def __init__(self, strategy: Schedule) -> None:
        self.strategy = strategy
        self.joined_at: dict[int, int] = {}  # group depth from the top -> global step it joined
        self.joined_epoch: dict[int, int] = {}  # group depth from the top -> epoch it joined in
        self._section: dict = {}

    # -- state: restored before configure_optimizers (Lightning restores callbacks first) --------
    def state_dict(self) -> dict:
        return {
            "unfrozen": self.strategy.unfrozen,
            "joined_at": dict(self.joined_at),
            "joined_epoch": self.joined_epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.strategy.restore(int(state["unfrozen"]))
        self.joined_at = {int(k): int(v) for k, v in state["joined_at"].items()}
        self.joined_epoch = {int(k): int(v) for k, v in state.get("joined_epoch", {}).items()}  # older: none

    def _layer_groups(self, pl_module):
        return pl_module.backbone.layer_groups()

    def _apply_freeze(self, pl_module) -> None:
        groups = self._layer_groups(pl_module)
        for i, g in enumerate(groups):
            trainable = len(groups) - 1 - i < self.strategy.unfrozen
            for p in g.parameters():
                p.requires_grad_(trainable)

    def setup(self, trainer, pl_module, stage: str) -> None:
        from lightning.pytorch.strategies import DDPStrategy

        if isinstance(trainer.strategy, DDPStrategy) and trainer.world_size > 1:
            # DDP registers only parameters that require grad when it wraps the model; later-unfrozen
            # groups would never be all-reduced. Register all of them, let DDP skip the frozen ones.
            trainer.strategy._ddp_kwargs["find_unused_parameters"] = True
            pl_module.backbone.requires_grad_(True)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._apply_freeze(pl_module)  # after the DDP wrap; the schedule's state is restored by now
        from transferlab.model.schedules import why_not_extendable

        for config in trainer.lr_scheduler_configs:
            why = why_not_extendable(config.scheduler, trainer.optimizers[0])
            if why:
                raise ConfigError(
                    f"strategy=progressive adds layer groups to the optimizer during training and the LR "
                    f"scheduler must take them on, but {why}. Use a scheduler with per-group base_lrs/lr_lambdas "
                    "only (transferlab.model.schedules.linear_warmup or inv_annealing; torch's LambdaLR, StepLR, "
                    "CosineAnnealingLR, ...), or this scheduler with strategy=partial or strategy=full."
                )

    # -- the schedule -----------------------------------------------------------------------------
    def _advance(self, trainer, pl_module, t: int) -> bool:
        target = self.strategy.target(t)
        if target <= self.strategy.unfrozen:
            return False
        from transferlab.model.schedules import add_group

        optimizer = trainer.optimizers[0]
        groups = self._layer_groups(pl_module)
        while self.strategy.unfrozen < target:
            k = self.strategy.join_next()  # depth from the top of the group that joins now
            g = groups[len(groups) - 1 - k]
            for p in g.parameters():
                p.requires_grad_(True)
            peak = self.strategy.group_lr(k)
            lr = 0.0 if self.strategy.warmup_steps else peak * _multiplier(optimizer)
            optimizer.add_param_group(
                {"name": f"backbone.{g.name}", "params": g.parameters(), "lr": lr, "initial_lr": peak}
            )
            for config in trainer.lr_scheduler_configs:  # the scheduler takes the group on, like the head
                add_group(config.scheduler, _head_index(optimizer), peak)
            self.joined_at[k], self.joined_epoch[k] = trainer.global_step, trainer.current_epoch
        pl_module.train()  # newly trainable groups leave eval mode
        return True

    def _set_lrs(self, trainer, pl_module) -> None:
        """Each joined group's LR for this step: its peak `group_lr(k)` x the run's LR schedule multiplier
        (the head's LR over its initial LR; 1 without a scheduler) x its linear ramp over `warmup_steps` from
        the step it joined. Derived from the global step and the head's LR, so a resume sets the same."""
        optimizer = trainer.optimizers[0]
        multiplier = _multiplier(optimizer)
        groups = self._layer_groups(pl_module)
        by_name = {g.get("name"): g for g in optimizer.param_groups}
        for k, joined in self.joined_at.items():
            group = by_name[f"backbone.{groups[len(groups) - 1 - k].name}"]
            steps = self.strategy.warmup_steps
            ramp = min(1.0, (trainer.global_step - joined + 1) / steps) if steps else 1.0
            group["lr"] = self.strategy.group_lr(k) * multiplier * ramp

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.strategy.unit == "epoch":
            self._advance(trainer, pl_module, trainer.current_epoch)
        pl_module.log("train/unfrozen_groups", float(self.strategy.unfrozen), on_step=False, on_epoch=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.strategy.unit == "step":
            self._advance(trainer, pl_module, trainer.global_step)
        self._set_lrs(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for group in trainer.optimizers[0].param_groups:
            pl_module.log(f"train/lr/{group.get('name', '?')}", torch.tensor(group["lr"]), on_epoch=True)

    # -- results.json: the end of training (the run's `params` and `norm` are counted before fit) ------
    def on_train_end(self, trainer, pl_module) -> None:
        from transferlab.model.norm import batch_stat_layers, trainable_bn_layers
        from transferlab.strategies.peft_base import count_params

        groups, backbone = self._layer_groups(pl_module), pl_module.backbone
        joined = [
            {"group": f"backbone.{groups[len(groups) - 1 - k].name}", "step": step, "epoch": self.joined_epoch.get(k)}
            for k, step in sorted(self.joined_at.items())
        ]
        self._section = {
            "params_final": count_params(pl_module),
            "unfrozen": {
                "unit": self.strategy.unit,
                "groups": joined,
                "trainable_bn_layers": len(trainable_bn_layers(backbone)),
                "batch_stat_bn_layers": len(batch_stat_layers(backbone, self.strategy.norm)),
            },
        }

    def result_section(self) -> dict:
        """`params_final`: `params` counted at the end of training. `unfrozen`: the groups that joined, in
        order, each with the global step (optimizer steps taken before it joined) and 0-based epoch it joined
        at, and the backbone's BN layers that were trainable / normalised with batch statistics at the end."""
        return self._section


def _head_index(optimizer: torch.optim.Optimizer) -> int:
    return next(i for i, g in enumerate(optimizer.param_groups) if g.get("name") == "head")


def _multiplier(optimizer: torch.optim.Optimizer) -> float:
    """The LR schedule's current multiplier, read off the head group (its LR over its initial LR)."""
    head = optimizer.param_groups[_head_index(optimizer)]
    return float(head["lr"]) / float(head.get("initial_lr", head["lr"]))
