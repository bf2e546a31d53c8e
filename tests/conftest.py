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

# Under pytest-xdist (addopts: `-n 2`), each worker and the jobs it starts use one torch
# thread: two workers of two threads each on a 2-core machine spin against each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# Small and quick unless a test asks for more (image tasks: text tests pass fast=False with their own sizes).
FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "data.image_size=32",
]


def load_script(name: str, rel: str):
    """A script under the checkout (e.g. a docs/results tabulator) imported as module `name`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


_REPO_BEFORE = pytest.StashKey[set]()


def _untracked() -> set[str] | None:
    """The checkout's untracked, not ignored files (`git status`); None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("?? ")} if out.returncode == 0 else None


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)  # (OMP_NUM_THREADS above is read when torch is imported: it may already be)


def pytest_sessionstart(session):
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller checks the whole session, not each worker
        session.config.stash[_REPO_BEFORE] = _untracked()


def pytest_sessionfinish(session, exitstatus):
    """Tests write only to temp dirs and ignored paths: a new file a test leaves in the checkout fails the session.

    (A generated `cache.dir=abc`, relative to the working directory, once left a 9 MB feature-cache entry in the
    repository, and it was committed.)"""
    before = session.config.stash.get(_REPO_BEFORE, None)
    after = _untracked()
    if before is None or after is None:
        return
    left = sorted(after - before)
    if left:
        shown = "\n  ".join(left[:20]) + (f"\n  ... and {len(left) - 20} more" if len(left) > 20 else "")
        print(
            f"\nERROR: the tests left {len(left)} new file(s) in the checkout {ROOT}:\n  {shown}\n"
            "A test must write under its tmp_path (run it there: monkeypatch.chdir(tmp_path)) or an ignored path.",
            file=sys.stderr,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
