"""Per-domain geometry: crop, pad and resize one domain's images before the shared transform.

Two domains of "the same" images often differ in framing: MNIST centres a 20x20 glyph box in a
28x28 frame, scikit-learn's 8x8 digits fill their frame edge to edge. Upsampled to one size, the
digits' strokes are then ~1.4x larger and touch the border, which a pretrained network reads as a
different object scale. A per-domain geometry step matches the framing from config, no code:

    python train.py data=mnist_to_digits data.geometry.target.pad=2     # glyph box 8/12 = 0.67 of the frame
    python train.py data=mnist_to_digits data.geometry.target.pad=0     # as the images come (studies before 2026-12)

Each step works on the domain's images at their native resolution, in this order: `crop` (keep the
central fraction of each side), `pad` (add `pad` pixels of `fill` on each side), `resize` (to a side
length, e.g. to imitate a low-resolution sensor). The shared transform (resize to `data.image_size`,
channels, normalisation) follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from transferlab.errors import DataError

MAX_SIDE = 4096  # pixels: larger frames are a typo (a 10^9-pixel side would overflow the tensor size)


@dataclass(frozen=True)
class Geometry:
    """One domain's framing.

    Args:
        crop: keep the central `crop` fraction of each side, in (0, 1]; null = no crop.
        pad: pixels (at native resolution) added on each side; 0 = none.
        fill: value of the added pixels (images in [0, 1]; 0 = black, the digits' background).
        resize: side length to resample to after crop and pad; null = keep.
    """

    crop: float | None = None
    pad: int = 0
    fill: float = 0.0
    resize: int | None = None

    @classmethod
    def from_config(cls, node, which: str) -> Geometry:
        """Build from `data.geometry.<which>` (a dict or null), with the key named in every error."""
        if node is None:
            return cls()
        if not isinstance(node, Mapping):
            raise DataError(f"data.geometry.{which}={node!r} must be a mapping like {{pad: 2}} or null.")
        unknown = set(node) - {"crop", "pad", "fill", "resize"}
        if unknown:
            raise DataError(f"data.geometry.{which} has unknown key(s) {sorted(unknown)}; use crop, pad, fill, resize.")
        g = cls(**{k: v for k, v in dict(node).items() if v is not None or k in ("crop", "resize")})
        if g.crop is not None and not 0 < g.crop <= 1:
            raise DataError(f"data.geometry.{which}.crop={g.crop} must be in (0, 1] (the kept fraction of each side).")
        if not isinstance(g.pad, int) or not 0 <= g.pad <= MAX_SIDE:
            raise DataError(f"data.geometry.{which}.pad={g.pad!r} must be a whole number of pixels in [0, {MAX_SIDE}].")
        if g.resize is not None and (not isinstance(g.resize, int) or not 1 <= g.resize <= MAX_SIDE):
            raise DataError(
                f"data.geometry.{which}.resize={g.resize!r} must be a side length in [1, {MAX_SIDE}] (or null)."
            )
        return g

    @property
    def identity(self) -> bool:
        return self.crop is None and self.pad == 0 and self.resize is None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, C, H, W)` in [0, 1] -> `(N, C, H', W')`."""
        if self.crop is not None and self.crop < 1:
            h, w = x.shape[-2:]
            ch, cw = max(1, round(h * self.crop)), max(1, round(w * self.crop))
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, value=self.fill)
        if self.resize is not None:
            x = resize_tensor(x, self.resize)
        return x.contiguous()

    def to_dict(self) -> dict:
        return {"crop": self.crop, "pad": self.pad, "fill": self.fill, "resize": self.resize}


def domain_geometry(node: dict | None) -> dict[str, Geometry]:
    """`data.geometry` -> `{"source": Geometry, "target": Geometry}` (identity where not given)."""
    if node is not None and not isinstance(node, Mapping):
        raise DataError(f"data.geometry={node!r} must be a mapping {{source: {{...}}, target: {{...}}}} or null.")
    node = dict(node or {})
    unknown = set(node) - {"source", "target"}
    if unknown:
        raise DataError(f"data.geometry has unknown domain(s) {sorted(unknown)}; use source and target.")
    return {which: Geometry.from_config(node.get(which), which) for which in ("source", "target")}


def resize_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """`(N, C, H, W)` -> `(N, C, size, size)`, bilinear with antialiasing when shrinking."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
