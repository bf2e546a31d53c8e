"""Shared test helpers: compose the real config tree, run it in a temp dir, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
from transferlab.config.compose import CONF, compose  # noqa: E402, F401  (CONF: re-exported to the tests)

# Offline first: no test may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Small and quick unless a test asks for more (image tasks: text tests pass fast=False with their own sizes).
FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "data.image_size=32",
]


def run_config(overrides: list[str], out_dir: Path, fast: bool = True) -> dict:
    """Compose and run in-process; returns the run result (results.json is written to out_dir)."""
    from transferlab.run import run

    cfg = compose((FAST if fast else []) + list(overrides), out_dir)
    return run(cfg)


def train_cli(args: list[str], cwd: Path | None = None, timeout: int = 300, env: dict | None = None):
    """Run `python train.py ARGS` in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
