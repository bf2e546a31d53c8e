"""Normalisation policy: what batch-norm layers do while a pretrained network is adapted.

One choice, exposed as `strategy.norm`, decides a large part of every transfer comparison on a BN
network (on MNIST -> digits it moves target accuracy from 0.17 to 0.33 with everything else equal):

| policy   | trainable groups' BN                               | frozen groups' BN | after training                 |
|----------|----------------------------------------------------|-------------------|--------------------------------|
| `train`  | batch statistics; running averages updated         | eval (pretrained) | -                              |
| `frozen` | eval: pretrained running statistics; affine trains | eval (pretrained) | -                              |
| `adabn`  | as `train`                                         | eval (pretrained) | AdaBN (Li et al. 2016) (*)     |

(*) the layers that normalised with batch statistics are re-estimated on unlabelled data of the evaluation domain.

Covers every subclass of `torch.nn.modules.batchnorm._BatchNorm`: BatchNorm1d/2d/3d, SyncBatchNorm and
timm's BatchNormAct2d. GroupNorm and LayerNorm keep no running statistics: no policy changes them
(their affine parameters train iff their group trains). The policy is applied by
`TransferModule.train()`, so it holds after every `.train()` call: at fit start, after each
validation, after a progressive unfreezing step, after a restore, on every DDP rank.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferlab.errors import ConfigError

log = logging.getLogger(__name__)

NormPolicy = Literal["train", "frozen", "adabn"]
POLICIES: tuple[str, ...] = ("train", "frozen", "adabn")


def check_policy(norm: str) -> str:
    """`norm` if it is a known policy, else a `ConfigError` naming the valid ones."""
    if norm not in POLICIES:
        import difflib

        close = difflib.get_close_matches(str(norm), POLICIES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"strategy.norm='{norm}' is not a normalisation policy; use one of {', '.join(POLICIES)}.{hint}"
        )
    return norm


def bn_layers(module: nn.Module) -> list[_BatchNorm]:
    """Every layer with running statistics (BatchNorm1d/2d/3d, SyncBatchNorm, timm BatchNormAct2d)."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def trainable_bn_layers(module: nn.Module) -> list[_BatchNorm]:
    """BN layers with a trainable affine parameter (the ones in trainable groups)."""
    return [m for m in bn_layers(module) if any(p.requires_grad for p in m.parameters(recurse=False))]


def apply_policy(backbone: nn.Module, norm: str, dropout=None) -> None:
    """Put the BN layers of a backbone in training mode into the policy's mode (call after `.train()`).

    Frozen BN layers are always in eval mode, and so is the frozen part the forward runs first (`dropout`, a
    `transferlab.model.dropout.DropoutPolicy`; None: every frozen sub-tree, `set_frozen_eval`); `frozen`
    additionally puts every BN layer in eval mode, so it normalises with its pretrained running statistics
    and never updates them.
    """
    from transferlab.backbones.base import set_frozen_eval

    if dropout is None:
        set_frozen_eval(backbone)  # frozen parts keep BN statistics and no dropout
    else:
        dropout.apply(backbone)
    if norm == "frozen":
        for bn in bn_layers(backbone):
            bn.eval()


def describe(backbone: nn.Module, norm: str) -> dict:
    """The policy and what it acts on, for results.json."""
    return {
        "policy": norm,
        "bn_layers": len(bn_layers(backbone)),
        "trainable_bn_layers": len(trainable_bn_layers(backbone)),
    }


def batch_stat_layers(backbone: nn.Module, norm: str) -> list[_BatchNorm]:
    """The BN layers that normalised with batch statistics while training: the trainable ones, unless `frozen`.

    AdaBN swaps exactly these to the evaluation domain's statistics. A layer that trained with fixed
    (pretrained) statistics keeps them: the layers above it learned on activations normalised that way,
    and replacing them breaks the model (measured: MNIST -> digits partial with `norm=frozen`, every layer
    re-estimated on the target: 10.7 % target accuracy, chance level; docs/results/da_study.md).
    """
    return [] if norm == "frozen" else trainable_bn_layers(backbone)


def check_batch_size(norm: str, backbone: nn.Module, may_train: list[nn.Parameter], batch_size: int) -> None:
    """Batch statistics of one sample are undefined: refuse `norm=train|adabn` with batches of 1 early."""
    if norm == "frozen" or batch_size > 1:
        return
    ids = {id(p) for p in may_train}
    if any(id(p) in ids for bn in bn_layers(backbone) for p in bn.parameters(recurse=False)):
        raise ConfigError(
            f"training batches of 1 sample with strategy.norm={norm}: batch-norm layers of the trainable groups "
            "would normalise each sample with its own statistics (undefined for one value per channel). Use "
            "strategy.norm=frozen (BN keeps its pretrained statistics), or a larger data.batch_size / more data."
        )


@torch.no_grad()
def reestimate(backbone: nn.Module, loader, device: torch.device | str = "cpu", layers: list | None = None) -> dict:
    """AdaBN (Li et al., ICLR-W 2017): re-estimate BN layers' running statistics on `loader`'s inputs.

    Running statistics are reset and recomputed as the cumulative average over the batches
    (momentum None), with every BN layer in training mode and everything else (dropout) in eval
    mode, as `torch.optim.swa_utils.update_bn` does; no gradients, no parameter changes. The
    modules' modes and momenta are restored afterwards.

    Args:
        backbone: the (possibly peft-wrapped) backbone, or the whole model (backbone and head: a bottleneck's
            BN is re-estimated on the backbone's features of the same batches).
        loader: batches `{"inputs": ...}` of unlabelled data of the evaluation domain.
        device: where the backbone lives.
        layers: the BN layers to re-estimate (default: every BN layer of `backbone`).

    Returns:
        `{"layers": n, "samples": m, "batches": b}` (`layers` 0 with a warning when there is no BN).
    """
    from lightning.pytorch.utilities import move_data_to_device

    layers = bn_layers(backbone) if layers is None else list(layers)
    if not layers:
        msg = (
            "norm/adaptation adabn: no batch-norm layer to re-estimate (a backbone without BN running "
            "statistics, e.g. a transformer with LayerNorm, or none that normalised with batch statistics "
            "while training): nothing was re-estimated"
        )
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
        return {"layers": 0, "samples": 0, "batches": 0}
    modes = {m: m.training for m in backbone.modules()}
    momenta = {bn: bn.momentum for bn in layers}
    backbone.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    samples = batches = 0
    try:
        for batch in loader:
            inputs = move_data_to_device(batch["inputs"], device)
            backbone(inputs)
            samples += len(batch["labels"])
            batches += 1
    finally:
        for m, training in modes.items():
            m.training = training
        for bn, momentum in momenta.items():
            bn.momentum = momentum
    return {"layers": len(layers), "samples": samples, "batches": batches}


@contextmanager
def running_stats_kept(modules: list[nn.Module], keep: bool = True):
    """Within the block, BN layers in training mode still normalise with their batch statistics but leave their
    running statistics as they were (`da.running_stats`: one domain's batches must not move the averages the
    evaluation uses). Exact: momentum 0 adds 0 x the batch statistic, and `num_batches_tracked` is restored."""
    layers = [m for root in modules for m in bn_layers(root) if m.training and m.track_running_stats] if keep else []
    saved = [(m, m.momentum, m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)
