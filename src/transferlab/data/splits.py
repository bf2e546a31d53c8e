"""Seeded, stratified splits and training-set subsampling (the training-size knob)."""

from __future__ import annotations

import numpy as np

from transferlab.errors import DataError


def stratified_split(labels: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Split indices into (pool, val, test) with the given (val, test) fractions per class."""
    rng = np.random.default_rng(seed)
    pool, val, test = [], [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = (int(round(f * len(idx))) for f in fractions)
        val.append(idx[:n_val])
        test.append(idx[n_val : n_val + n_test])
        pool.append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(part)) for part in (pool, val, test))


def folder_splits(offsets: dict[str, np.ndarray], labels: np.ndarray, fractions: tuple[float, float], seed: int):
    """(train, val, test) for a folder with its own `train/` (and maybe `val/`, `test/`): those are used as
    given; a missing val or test split is carved out of `train/` alone (stratified, seeded), never out of
    the user's test set. `offsets`: the indices of each folder's files in `labels`."""
    train = offsets["train"]
    val_frac, test_frac = fractions
    need = (0.0 if "val" in offsets else val_frac, 0.0 if "test" in offsets else test_frac)
    rest, val, test = stratified_split(labels[train], need, seed)  # positions within train/
    return (
        train[rest],
        offsets["val"] if "val" in offsets else train[val],
        offsets["test"] if "test" in offsets else train[test],
    )


def subsample(
    pool: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    seed: int,
    per_class: int | None = None,
    fraction: float | None = None,
    what: str = "data",
) -> np.ndarray:
    """Pick the labelled training set from `pool`: K per class, a stratified fraction, or all.

    Raises:
        DataError: K < 1, K larger than the smallest class, or a fraction outside (0, 1].
    """
    if per_class is not None and fraction is not None:
        raise DataError("set only one of data.train_per_class and data.train_fraction (the other to null).")
    rng = np.random.default_rng(seed)
    counts = {c: int((labels[pool] == c).sum()) for c in np.unique(labels[pool])}
    if per_class is not None:
        if int(per_class) != per_class or per_class < 1:
            raise DataError(f"data.train_per_class={per_class} must be an integer >= 1 (or null for all examples).")
        c_min = min(counts, key=counts.get)
        if per_class > counts[c_min]:
            raise DataError(
                f"data.train_per_class={per_class} but class '{classes[c_min]}' of {what} has only "
                f"{counts[c_min]} training examples after the val/test hold-out. Use "
                f"data.train_per_class<={counts[c_min]}, or null to use all examples."
            )
        take = lambda idx: rng.permutation(idx)[:per_class]
    elif fraction is not None:
        if not 0 < fraction <= 1:
            raise DataError(f"data.train_fraction={fraction} must be in (0, 1].")
        take = lambda idx: rng.permutation(idx)[: max(1, int(round(fraction * len(idx))))]
    else:
        return pool
    return np.sort(np.concatenate([take(pool[labels[pool] == c]) for c in counts]))
