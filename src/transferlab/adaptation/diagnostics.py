"""Shift diagnostics on a backbone's features: proxy A-distance (Ben-David et al. 2007) and MMD.

PAD = 2 (1 - 2 ε), ε the held-out error of a linear domain classifier on source-vs-target
features: 0 when the domains are indistinguishable, 2 when perfectly separable. Run before
training and again at the end to see whether adaptation made the features domain-invariant.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from transferlab.adaptation.mmd import mmd2


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module):
    """`model` in eval mode, without gradients, and back in its own mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def extract_features(backbone: torch.nn.Module, loader, max_samples: int = 500, fn=None, seed: int = 0) -> torch.Tensor:
    """Backbone features of `max_samples` examples of `loader` -> `(N, F)`, drawn uniformly at random (`seed`, its
    own generator) from the loader's dataset: a split stored class by class (the MNIST-5k source is) would give
    the first classes only, and a shift measured between a few classes of one domain and all of the other's.
    `fn`: what maps a batch's inputs to the features (default `backbone`; a run's `module.features`, which
    also reads cached features or finishes a cached prefix's outputs), with `backbone` in eval mode meanwhile."""
    from torch.utils.data import DataLoader, Subset

    ds = loader.dataset
    if hasattr(ds, "__len__") and len(ds) > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(len(ds), max_samples, replace=False))
        loader = DataLoader(Subset(ds, idx.tolist()), batch_size=loader.batch_size, collate_fn=loader.collate_fn)
    device = next(backbone.parameters()).device
    fn = backbone if fn is None else fn
    feats, n = [], 0
    with _evaluating(backbone):
        for batch in loader:
            f = fn(_to_device(batch["inputs"], device)).float().cpu()
            feats.append(f)
            n += len(f)
            if n >= max_samples:
                break
    return torch.cat(feats)[:max_samples]


def proxy_a_distance(f_s: torch.Tensor, f_t: torch.Tensor, seed: int = 0, C: float = 1.0) -> float:
    """PAD from a logistic-regression domain classifier trained on half of each domain, tested on the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n = min(len(f_s), len(f_t))  # balanced, so chance error is 0.5: the larger set subsampled at random
    rng = np.random.default_rng(seed)  # (its first rows could be its first classes)
    x = np.concatenate([f_s.numpy()[rng.permutation(len(f_s))[:n]], f_t.numpy()[rng.permutation(len(f_t))[:n]]])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    perm = rng.permutation(len(x))
    train, test = perm[: len(x) // 2], perm[len(x) // 2 :]
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(x[train]), y[train])
    err = 1.0 - clf.score(scaler.transform(x[test]), y[test])
    return float(2.0 * (1.0 - 2.0 * err))


def feature_shift(f_s: torch.Tensor, f_t: torch.Tensor, seed: int = 0) -> dict:
    """`{"proxy_a_distance", "mmd"}` between two feature sets (MMD² on jointly standardised features)."""
    z = torch.cat([f_s, f_t])
    mu, sd = z.mean(0), z.std(0).clamp_min(1e-6)
    mmd = float(mmd2((f_s - mu) / sd, (f_t - mu) / sd))
    return {"proxy_a_distance": proxy_a_distance(f_s, f_t, seed), "mmd": mmd}


def shift_report(
    backbone: torch.nn.Module, data, max_samples: int = 500, split: str = "val", seed: int = 0, fn=None, embed=None
) -> dict:
    """Measure the source/target shift on `backbone`'s features over `data`'s `split` sets.

    Args:
        backbone: any backbone (its current weights; call before and after training), or a run's module.
        data: a built `ClassificationData` with a target domain (`data.build(...)` done).
        max_samples: examples per domain, drawn at random from the split (the PAD classifier trains on half).
        split: "train", "val" or "test" (labels are not used).
        seed: seed of the examples drawn and of the PAD train/test split.
        fn: inputs -> features (default `backbone`; see `extract_features`).
        embed: features -> the space the adaptation loss aligns (a head's bottleneck, in eval mode): adds
            `bottleneck` {`proxy_a_distance`, `mmd`} measured there.
    """
    loaders = {w: data._loader(f"{w}/{split}", train=False) for w in ("source", "target")}
    f_s, f_t = (extract_features(backbone, loaders[w], max_samples, fn, seed) for w in ("source", "target"))
    report = feature_shift(f_s, f_t, seed)
    if embed is not None:  # in eval mode: the bottleneck's BN normalises with (and keeps) its running statistics
        device = next(backbone.parameters()).device
        with _evaluating(backbone):
            z_s, z_t = (embed(f.to(device)).float().cpu() for f in (f_s, f_t))
        report["bottleneck"] = feature_shift(z_s, z_t, seed)
    return report
