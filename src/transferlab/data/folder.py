"""Your own images: a root with one sub-folder per class (optionally train/ val/ test/ inside).

Every file is checked once at preparation (a cheap header decode). Files that can't be decoded
are an error by default; `bad_files=skip` drops and counts them (with a warning) as long as they
stay under `max_bad_fraction`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferlab.data.base import Domain
from transferlab.data.geometry import Geometry, domain_geometry
from transferlab.data.images import ImageData
from transferlab.data.splits import folder_splits
from transferlab.errors import DataError

log = logging.getLogger(__name__)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
LAYOUT = "a folder with one sub-folder of images per class (or train/, val/, test/ folders of those)"


def scan(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files, labels and sorted class names under `root/<class>/*`."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTS:
                files.append(f)
                labels.append(i)
    return files, np.asarray(labels, dtype=np.int64), classes


def undecodable(files: list[Path]) -> list[tuple[Path, str]]:
    """Files PIL can't decode, with the reason."""
    from PIL import Image

    bad = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception as e:  # PIL raises many types for corrupt data
            bad.append((f, f"{type(e).__name__}: {e}"))
    return bad


def to_mode(im, mode: str):
    """A PIL image in `mode` ("L" or "RGB"), high bit depths scaled to 8 bits, not clipped.

    PIL's `convert` clips 16-bit ("I;16", "I") and float ("F") gray images at 255, so a 16-bit scan decodes
    to a near-white image; here they are scaled by their type's range (16-bit: 65535; float: 1 when the
    values lie in [0, 1]).
    """
    from PIL import Image

    if im.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return im.convert(mode)
    a = np.asarray(im, dtype=np.float64)
    peak = float(a.max()) if a.size else 0.0
    if im.mode.startswith("I;16") or (im.mode == "I" and 255 < peak <= 65535):
        top = 65535.0
    elif im.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = max(255.0, peak)
    a8 = np.clip(np.rint(a / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(a8, "L").convert(mode)


class _Framed:
    """`Geometry` on one `(C, H, W)` image tensor (a torchvision-style transform with a stable repr)."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.geometry(x.unsqueeze(0))[0]

    def __repr__(self) -> str:
        return f"Framed({self.geometry})"


class FolderImages(Dataset):
    """Decode, resize, center-crop and normalise images from files."""

    def __init__(
        self,
        files: list[Path],
        labels: np.ndarray,
        size: int,
        mean,
        std,
        in_chans: int,
        geometry: Geometry | None = None,
    ) -> None:
        from torchvision import transforms as T

        self.files, self.labels = files, torch.from_numpy(labels)
        self.mode = "L" if in_chans == 1 else "RGB"
        if geometry is None or geometry.identity:
            self.transform = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
        else:  # the domain's own framing first (on the decoded image), then the shared transform
            self.transform = T.Compose(
                [
                    T.ToTensor(),
                    _Framed(geometry),
                    T.Resize(size, antialias=True),
                    T.CenterCrop(size),
                    T.Normalize(mean, std),
                ]
            )

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """Hash of file paths, sizes, mtimes, labels and the transform (for the feature cache)."""
        import hashlib

        h = hashlib.sha256(f"{self.mode}|{self.transform}".encode())
        for f, y in zip(self.files, self.labels.tolist(), strict=False):
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}|{y}".encode())
        return h.hexdigest()

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        try:
            with Image.open(self.files[i]) as im:
                x = self.transform(to_mode(im, self.mode))
        except OSError as e:
            raise DataError(f"can't decode image '{self.files[i]}' ({e}); remove or replace the file.") from e
        return {"inputs": x, "labels": self.labels[i]}


class ImageFolderData(ImageData):
    """Images from `root` (and optionally `target_root` for a domain pair).

    Args:
        root: source images, `root/<class>/*.jpg` or `root/{train,val,test}/<class>/*.jpg`.
        target_root: optional target-domain images with the same classes.
        image_size: side length fed to the backbone; null = the backbone's pretraining size.
        bad_files: "error" (stop at the first undecodable file) or "skip" (drop and count them).
        max_bad_fraction: with "skip", still stop when more than this share of files is bad.
        geometry: per-domain framing before the shared transform (see `transferlab.data.geometry`).
    """

    def __init__(
        self,
        root: str,
        target_root: str | None = None,
        image_size: int | None = None,
        bad_files: str = "error",
        max_bad_fraction: float = 0.01,
        geometry: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.geometry = domain_geometry(geometry)
        if bad_files not in {"error", "skip"}:
            raise DataError(f"data.bad_files='{bad_files}' must be 'error' or 'skip'.")
        self.roots = {"source": root, "target": target_root}
        self.has_target_domain = target_root is not None
        self.image_size, self.bad_files, self.max_bad_fraction = image_size, bad_files, max_bad_fraction
        self.files: dict[str, list[Path]] = {}
        self.bad_count = 0

    def _checked(self, files: list[Path], labels: np.ndarray, where: Path) -> tuple[list[Path], np.ndarray]:
        bad = undecodable(files)
        if bad and (self.bad_files == "error" or len(bad) > self.max_bad_fraction * len(files)):
            listing = "; ".join(f"{f} ({why})" for f, why in bad[:3])
            fix = (
                "remove or replace them, or set data.bad_files=skip to drop them"
                if self.bad_files == "error"
                else f"that exceeds data.max_bad_fraction={self.max_bad_fraction}; clean the folder"
            )
            raise DataError(
                f"{len(bad)} of {len(files)} images under '{where}' can't be decoded: {listing}. Fix: {fix}."
            )
        if bad:
            log.warning("skipping %d undecodable images under %s (e.g. %s)", len(bad), where, bad[0][0])
            self.bad_count += len(bad)
            keep = np.array([f not in {b for b, _ in bad} for f in files])
            files, labels = [f for f, k in zip(files, keep, strict=False) if k], labels[keep]
        return files, labels

    def load_domain(self, which: str) -> Domain:
        root = Path(str(self.roots[which])).expanduser()
        key = "root" if which == "source" else "target_root"
        if not root.is_dir():
            raise DataError(f"data.{key}='{root}' does not exist or is not a folder. Point it at {LAYOUT}.")
        splits = [s for s in ("train", "val", "test") if (root / s).is_dir()]
        parts = {s: scan(root / s) for s in splits} if "train" in splits else {"all": scan(root)}
        classes = next(iter(parts.values()))[2]
        if not classes or not any(len(p[0]) for p in parts.values()):
            raise DataError(f"no images found under data.{key}='{root}'. Expected {LAYOUT}.")
        for s, (_, _, c) in parts.items():
            if c != classes:
                raise DataError(
                    f"'{root / s}' has classes {c} but '{root / splits[0]}' has {classes}; use the same class folders."
                )
        files, labels, offsets = [], [], {}
        for s, (f, y, _) in parts.items():
            f, y = self._checked(f, y, root / (s if s != "all" else ""))
            offsets[s] = np.arange(len(files), len(files) + len(f))
            files += f
            labels.append(y)
        self.files[which] = files
        dom = Domain(root.name, np.concatenate(labels), classes)
        if "all" not in parts:  # the folder's own splits, as given; a missing one is carved out of train/ only
            dom.train, dom.val, dom.test = folder_splits(offsets, dom.labels, self.fractions, self.split_seed)
            given = ", ".join(f"{s}/ ({len(offsets[s])})" for s in splits)
            carved = [s for s in ("val", "test") if s not in parts]
            log.info(
                "data.%s: using the folder's splits %s%s",
                key,
                given,
                f"; {'/'.join(carved)} carved out of train/" if carved else "",
            )
        return dom

    def domain_images(self, which: str, size: int | None = None) -> torch.Tensor:
        """All images of `which`, `(N, C, S, S)` in [0, 1]: C = 1 if every file is grayscale, else 3.

        With `size` each is resized and center-cropped to `size`; without, all must share one size.
        """
        from PIL import Image
        from torchvision import transforms as T

        gray_modes = {"1", "L", "LA", "I", "I;16", "F"}
        images = []
        for f in self.files[which]:
            with Image.open(f) as im:
                images.append(im.copy())  # decoded in memory, file closed
        mode = "L" if all(im.mode in gray_modes for im in images) else "RGB"
        sizes = sorted({im.size for im in images})
        if size is None and len(sizes) > 1:
            raise DataError(
                f"the {which} images have different sizes ({sizes[0]} ... {sizes[-1]} px): a translator "
                "needs one size; set translate.image_size (e.g. 64) to resize them."
            )
        prep = T.Compose(([T.Resize(size), T.CenterCrop(size)] if size else []) + [T.ToTensor()])
        return torch.stack([prep(to_mode(im, mode)) for im in images])

    def make_dataset(self, which: str, indices: np.ndarray, train: bool) -> Dataset:
        if which in self.translated:  # translate=...: also what the feature cache reads
            return self.translated_dataset(which, indices)
        pre = self.preprocessing
        size = self.image_size or pre.input_size[-1]
        files = [self.files[which][i] for i in indices]
        return FolderImages(
            files, self.domains[which].labels[indices], size, pre.mean, pre.std, pre.in_chans, self.geometry[which]
        )
