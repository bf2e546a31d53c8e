"""The picture of a translation: source images, their translations, and target examples, as one PNG."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def write_grid(path: Path, rows: list[torch.Tensor], scale: int = 3) -> Path:
    """Save `rows` (each `(N, C, S, S)` in [0, 1], same shape) as one image, one row per tensor.

    Pixels are enlarged `scale` times (nearest) so 32-px digits stay legible.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    from transferlab.infra.paths import atomic_write

    x = torch.cat(rows).clamp(0, 1)  # (R * N, C, S, S)
    x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=len(rows[0]), padding=2, pad_value=0.5)  # (3, H, W)
    array = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (H, W, 3)
    atomic_write(Path(path), lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
    return Path(path)


def log_grid(loggers: list, path: str | Path, key: str = "translate/grid") -> None:
    """Log the PNG to every logger that shows images (W&B, TensorBoard); others are skipped."""
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(path).convert("RGB"))  # (H, W, 3)
    for lg in loggers:
        kind = type(lg).__name__
        if kind == "WandbLogger":
            lg.log_image(key=key, images=[str(path)], caption=["rows: source | translated | target"])
        elif kind == "TensorBoardLogger":
            lg.experiment.add_image(key, array, 0, dataformats="HWC")
        else:
            log.debug("logger %s shows no images; the grid is at %s", kind, path)
