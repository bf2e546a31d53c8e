"""Feature cache: one backbone pass per sample when the backbone is frozen.

With `feature_extraction` every epoch (and every job of a sweep) would recompute the same
features. When the whole backbone is frozen, no training-time augmentation touches its inputs and
the datasets can fingerprint their content, features are computed once, stored under
`<cache dir>/features/<key>.safetensors` and reused across epochs, runs and sweep jobs.

With `partial` the leading frozen layer groups are a prefix of the network: where the backbone can
cut there (`Backbone.split(k)`: timm EfficientNets and ResNets), the prefix's outputs are cached the
same way and the run trains the suffix (the unfrozen groups) and the head on them.

The key hashes everything that determines the features: the (prefix's) weights and class, where
the cut is, the dataset content and its deterministic transform (size, normalisation, channels)
and the dtype. With `progressive` the prefix is what its schedule can't reach within the run's budget
(`run_budget`). How entries are stored, locked and kept per process: `transferlab.model.feature_store`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

from transferlab.infra.paths import cache_dir
from transferlab.model import depthwise_crop
from transferlab.model.feature_store import CacheStats, lookup
from transferlab.model.memory_format import layout_of
from transferlab.model.run_device import kernels_key, placed

log = logging.getLogger(__name__)


class FeatureDataset(Dataset):
    """Precomputed features `(N, F)` (or a prefix's feature maps `(N, C, H, W)`) with labels, in the "
    "same order as the source dataset."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": self.features[i], "labels": self.labels[i]}


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, shapes, dtypes, values)."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def structure_hash(module: torch.nn.Module, info=None) -> str:
    """SHA-256 of what decides the features besides the weights: the module tree as printed (layer types and
    settings: pooling, activations, strides, dilations), the code of every traced graph in it (an ONNX
    backbone cut at another node), and the backbone's recorded `info` (its layout, cut point, source)."""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(module))  # no object addresses: the key must hold across runs
    text += "".join(m.code for m in module.modules() if isinstance(m, torch.fx.GraphModule))
    if info is not None:
        text += json.dumps(info.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# The run's `trainer.precision` -> the autocast dtype its frozen forward runs under (None: float32). Other
# precisions (bf16-true, 16-true, 64-true) cast the weights when training starts: the cache declines them.
AUTOCAST = {"32": None, "32-true": None, "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16}
AUTOCAST |= {"16": torch.float16, "16-mixed": torch.float16}


def precision_reason(precision) -> str:
    """Why the cache can't serve a run at `precision` ("" when it can: float32, or mixed under autocast)."""
    if str(precision) in AUTOCAST:
        return ""
    return f"precision={precision} casts the backbone's weights when training starts: float32 features aren't its own"


@torch.no_grad()
def compute(
    backbone: torch.nn.Module,
    dataset: Dataset,
    batch_size: int,
    desc: str,
    stats: CacheStats,
    rows=None,
    autocast: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(features, labels)` of the dataset (or of its `rows`, a range starting at a multiple of `batch_size`),
    under autocast to `autocast` when the run trains with mixed precision (its uncached forward does)."""
    from torch.utils.data import Subset
    from tqdm.auto import tqdm

    if rows is not None:
        dataset = Subset(dataset, rows)

    feats, labels = [], []
    device = next(iter(backbone.parameters()), torch.empty(0)).device  # where the forward runs
    was_training = backbone.training
    backbone.eval()
    # A DataLoader draws its base seed from the global RNG: fork it, so that a cached run shuffles
    # (and everything after) exactly like the uncached run.
    with torch.random.fork_rng(devices=[]):
        for batch in tqdm(
            DataLoader(dataset, batch_size=batch_size, pin_memory=device.type == "cuda"),
            desc=f"features {desc}",
            leave=False,
        ):
            with torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext():
                out = backbone(batch["inputs"].to(device, non_blocking=True))
            feats.append(out.float().cpu().contiguous())  # (B, F) or (B, C, H, W); mixed: its rounded values
            labels.append(batch["labels"])
            stats.forwards += len(batch["labels"])
            stats.by_domain[desc] = stats.by_domain.get(desc, 0) + len(batch["labels"])
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@runtime_checkable
class Fingerprinted(Protocol):
    """A dataset that can hash exactly what it yields (the feature cache's key)."""

    def fingerprint(self) -> str: ...


MAX_PREFIX_GB = 4.0  # prefix outputs larger than this (all images of a domain, fp32) are not cached


def run_budget(trainer_cfg, data) -> tuple[int | None, int | None]:
    """Upper bounds on the run's last epoch and last optimizer step (None: unbounded), from the trainer
    limits and the training loaders' sizes; what an unfreezing schedule can reach by then stays frozen."""
    import math

    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps") or -1
    if max_epochs is None and max_steps == -1:
        max_epochs = 1000  # Lightning's default
    accum = trainer_cfg.get("accumulate_grad_batches") or 1
    if trainer_cfg.get("limit_train_batches") not in (None, 1, 1.0):
        return (max_epochs - 1 if max_epochs and max_epochs > 0 else None), (max_steps - 1 if max_steps > 0 else None)
    per_epoch = data.epoch_batches()  # the source's batches, or the longer domain's (da.epoch=longest)
    epochs = [max_epochs] if max_epochs and max_epochs > 0 else []
    steps = [max_steps] if max_steps > 0 else []
    if max_steps > 0:
        epochs.append(math.ceil(max_steps * accum / per_epoch))
    if max_epochs and max_epochs > 0:
        steps.append(max_epochs * math.ceil(per_epoch / accum))
    return (min(epochs) - 1 if epochs else None), (min(steps) - 1 if steps else None)


def frozen_prefix(strategy, backbone, budget: tuple[int | None, int | None] = (None, None)) -> int | None:
    """Leading layer groups that stay frozen for the whole run; None = the whole backbone.

    `budget`: `run_budget(...)`; an unfreezing schedule (progressive) keeps frozen the groups it can't
    reach within it.
    """
    if strategy.callbacks():  # e.g. a progressive unfreezing schedule
        most = strategy.unfrozen_at_most(*budget)
        if most is None:
            return 0
        if most == 0:
            return None  # the schedule never starts within the run: the head trains on fixed features
        return max(0, len(backbone.layer_groups()) - most)
    if not any(p.requires_grad for p in backbone.parameters()):
        return None if strategy.backbone_always_frozen or not strategy.trains else 0
    k = 0
    for group in backbone.layer_groups():
        if any(p.requires_grad for p in group.parameters()):
            break
        k += 1
    return k


def why_not(strategy, module, data, budget: tuple[int | None, int | None] = (None, None)) -> str:
    """Empty when the features (or the frozen prefix's outputs) can be cached, else the reason they can't."""
    k = frozen_prefix(strategy, module.backbone, budget)
    if k == 0 and strategy.callbacks():
        return "the unfreezing schedule may reach every layer group within the run's budget"
    if k == 0:
        return "the backbone has trainable parameters"
    if k is not None and module.backbone.split(k) is None:
        return (
            f"the frozen part ({k} layer groups) of '{module.backbone.info.name}' is not a prefix the cache can cut "
            "(supported: timm EfficientNets and ResNets)"
        )
    if getattr(module.__dict__.get("dropout_policy"), "policy", None) == "all":
        return "backbone_dropout=all runs the frozen layers in training mode: their outputs are not fixed"
    if module.augment is not None or module.tta is not None:
        return "augmentation changes the backbone's inputs"
    if module.strategy.norm == "adabn" or (module.adaptation is not None and module.adaptation.reestimates_bn):
        return "AdaBN re-estimates batch-norm statistics after training: cached features would be stale"
    if not all(isinstance(ds, Fingerprinted) for ds in data.datasets.values()):
        return "the datasets can't fingerprint their content"
    return ""


def _model_key(prefix: torch.nn.Module, backbone, k: int | None) -> str:
    """What decides the frozen part's outputs: weights, structure, the cut, layout and kernels."""
    key = weights_hash(prefix) + "|" + structure_hash(prefix, getattr(backbone, "info", None))
    key += "" if k is None else f"|prefix:{k}"
    if layout_of(prefix) == "channels_last":  # the same values up to rounding: kept apart all the same
        key += "|channels_last"
    if depthwise_crop.applied(prefix):  # identical outputs where measured; kept apart all the same
        key += "|depthwise_crop"
    return key


def cache_features(
    module,
    data,
    directory: str | None = None,
    batch_size: int = 128,
    budget: tuple[int | None, int | None] = (None, None),
    precision="32-true",
    device: torch.device | str = "cpu",
) -> CacheStats:
    """Swap `data`'s datasets for cached backbone features and switch `module` to them.

    Features are cached per *domain* (every image of it, in a fixed order), and each split takes its
    rows by index: all training subsets, seeds and sizes of a sweep share one backbone pass per image.
    `precision` (`trainer.precision`): a mixed one computes them under autocast, as the uncached run would.
    `device`: where the frozen part runs meanwhile (`run_device.run_device(cfg.hardware)`: the run's own
    accelerator); it goes back where it was afterwards. Features computed off the CPU are kept apart in the key.
    """
    stats = CacheStats()
    root = Path(directory).expanduser() if directory else cache_dir("features")
    stats.dir = str(root)
    k = frozen_prefix(module.strategy, module.backbone, budget)
    prefix, suffix = (module.backbone, None) if k is None else module.backbone.split(k)
    stats.prefix_groups = k
    device = torch.device(device)
    stats.device = str(device)
    model_key = _model_key(prefix, module.backbone, k)  # hashed where the weights are (the CPU, at build)
    with placed(prefix, device):
        if suffix is not None:
            reason = _prefix_reason(prefix, data, k, device)
            if reason:
                stats.reason = reason
                return stats
        cached = _fill(prefix, model_key, data, root, batch_size, precision, device, stats)
    data.use_datasets(cached)
    module.use_cached_features(suffix)  # None: the cache holds the backbone's features
    return stats


def _prefix_reason(prefix: torch.nn.Module, data, k: int, device: torch.device) -> str:
    """Why a frozen prefix's outputs are not worth caching ("" when they are)."""
    import numpy as np

    with torch.no_grad():
        x = next(iter(DataLoader(data.make_dataset(next(iter(data.domains)), np.arange(1), train=False))))["inputs"]
        probe = prefix.eval()(x.to(device))
        gb = 4 * probe.numel() * sum(len(d.labels) for d in data.domains.values()) / 1e9
    if probe.numel() > x.numel():  # e.g. only the stem is frozen (LoRA): caching would cost more than it saves
        return (
            f"the frozen prefix ({k} layer groups) outputs more values per image ({probe.numel():,}) "
            f"than its input ({x.numel():,}): not worth caching"
        )
    if gb > MAX_PREFIX_GB:
        return f"the frozen prefix's outputs would take {gb:.1f} GB (> {MAX_PREFIX_GB} GB)"
    return ""


def _fill(prefix, model_key: str, data, root: Path, batch_size: int, precision, device, stats) -> dict:
    """Every domain's cached features (from the cache, or computed on `device`), split by split."""
    import numpy as np

    cached: dict[str, FeatureDataset] = {}
    for which, dom in data.domains.items():
        full = data.make_dataset(which, np.arange(len(dom.labels)), train=False)
        numbers = "float32" if AUTOCAST[str(precision)] is None else str(AUTOCAST[str(precision)])
        numbers += kernels_key(device)  # "" on the CPU: other kernels, other rounding
        key = hashlib.sha256(f"{model_key}|{full.fingerprint()}|{numbers}".encode()).hexdigest()[:40]
        path = root / f"{key}.safetensors"
        # filled in ranges of whole batches (about 16) by every sweep job that needs it at the same time
        chunk = batch_size * max(1, -(-len(full) // (batch_size * 16)))

        def rows(lo: int, hi: int, full=full, which=which):
            return compute(prefix, full, batch_size, which, stats, range(lo, hi), AUTOCAST[str(precision)])

        hit = lookup(key, path, rows, stats, rows=len(full), chunk=chunk)
        stats.keys.append(key)
        feats, labels = hit
        for split in ("train", "val", "test"):
            idx = torch.from_numpy(np.asarray(getattr(dom, split), dtype=np.int64))
            cached[f"{which}/{split}"] = FeatureDataset(feats[idx], labels[idx])
    return cached
