"""Where transferlab keeps converted weights and other caches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(sub: str = "") -> Path:
    """`$TRANSFERLAB_CACHE` or `~/.cache/transferlab`, created on demand."""
    root = Path(os.environ.get("TRANSFERLAB_CACHE") or Path.home() / ".cache" / "transferlab")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: Path, write) -> Path:
    """Write a file through `write(tmp_path)` and rename it into place.

    A crash (or a concurrent job) never leaves a half-written file at `path`: readers see either
    nothing or the complete file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
