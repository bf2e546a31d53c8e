"""Image classification data from in-memory arrays (bundled digits) and domain pairs of them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from transferlab.data.base import ClassificationData, Domain
from transferlab.data.geometry import domain_geometry, resize_tensor
from transferlab.data.sources import ArraySource


class NormalizedImages(Dataset):
    """Images resized once; grayscale replicated to the backbone's channels and normalised per item.

    Args:
        images: `(N, 1, S, S)` (or `(N, C, S, S)` with C = the backbone's channels) float in [0, 1].
        labels: `(N,)` int64.
        mean, std: the backbone's per-channel normalisation (its length = channels out).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std) -> None:
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """Content hash of exactly what `__getitem__` yields (for the feature cache)."""
        import hashlib

        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        h.update(f"{tuple(self.images.shape)}|{self.mean.flatten().tolist()}|{self.std.flatten().tolist()}".encode())
        return h.hexdigest()

    def __getitem__(self, i: int) -> dict:
        x = self.images[i].expand(len(self.mean), -1, -1)  # (C, S, S)
        return {"inputs": (x - self.mean) / self.std, "labels": self.labels[i]}


class ImageData(ClassificationData):
    """Image datamodules: can hand every image of a domain to a translator and train on its output.

    Subclasses implement `domain_images`; `make_dataset` returns `translated_dataset` for a domain
    that `set_translated` replaced, so every reader (splits, the feature cache) sees the translation.
    """

    image_size: int | None = None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.translated: dict[str, torch.Tensor] = {}  # domain -> `(N, C, S, S)` images from a translator

    def domain_images(self, which: str, size: int | None = None) -> torch.Tensor:
        """Every image of domain `which` as `(N, C, S, S)` float in [0, 1]; `size` resizes (null: native)."""
        raise NotImplementedError

    def set_translated(self, which: str, images: torch.Tensor) -> None:
        """Replace domain `which`'s images by `images` (pixel-level adaptation), before `build`."""
        if self.datasets:
            raise RuntimeError("set_translated must run before build(): the datasets already exist")
        self.translated[which] = images

    def translated_dataset(self, which: str, indices: np.ndarray) -> Dataset:
        """The translated images of `which` at `indices`, resized and normalised for the backbone."""
        pre = self.preprocessing
        images = resize_tensor(
            self.translated[which][torch.from_numpy(np.asarray(indices, dtype=np.int64))],
            self.image_size or pre.input_size[-1],
        )
        return NormalizedImages(images, torch.from_numpy(self.domains[which].labels[indices]), pre.mean, pre.std)


class ArrayImageData(ImageData):
    """Bundled array datasets: one domain (`target: null`) or a source -> target pair.

    Args:
        source: a callable returning an `ArraySource` (labelled domain).
        target: optional callable returning the target `ArraySource` (labels used for evaluation only).
        image_size: side length fed to the backbone; null = the backbone's pretraining size.
        geometry: per-domain framing before the shared transform, `{source: {pad, crop, fill, resize},
            target: {...}}` (see `transferlab.data.geometry`); null = images as they come.
        **kwargs: see `ClassificationData`.
    """

    def __init__(
        self,
        source: Callable[[], ArraySource],
        target: Callable[[], ArraySource] | None = None,
        image_size: int | None = None,
        geometry: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.geometry = domain_geometry(geometry)
        self._loaders = {"source": source, "target": target}
        self.has_target_domain = target is not None
        self.image_size = image_size
        self._arrays: dict[str, ArraySource] = {}

    def load_domain(self, which: str) -> Domain:
        src = self._loaders[which]()
        self._arrays[which] = src
        return Domain(src.name, src.labels, src.classes)

    def domain_images(self, which: str, size: int | None = None) -> torch.Tensor:
        """All images of `which`, `(N, 1, S, S)` in [0, 1], at their native size or resized to `size`."""
        x = self.geometry[which](torch.from_numpy(self._arrays[which].images).unsqueeze(1))  # (N, 1, H', W')
        return resize_tensor(x, size) if size else x

    def make_dataset(self, which: str, indices: np.ndarray, train: bool) -> Dataset:
        if which in self.translated:  # translate=...: also what the feature cache reads
            return self.translated_dataset(which, indices)
        pre = self.preprocessing
        size = self.image_size or pre.input_size[-1]
        arr = self._arrays[which]
        images = resize_tensor(self.geometry[which](torch.from_numpy(arr.images[indices]).unsqueeze(1)), size)
        return NormalizedImages(images, torch.from_numpy(arr.labels[indices]), pre.mean, pre.std)
