"""Shared helpers for the benchmark scripts: environment record and BENCHMARKS.md sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "BENCHMARKS.md"
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


def machine() -> str:
    import lightning
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return (
        f"{platform.machine()} {dev}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {lightning.__version__}; {dt.date.today().isoformat()}"
    )


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) the section `key` of BENCHMARKS.md; other sections stay."""
    text = (
        OUT.read_text()
        if OUT.exists()
        else "# Benchmarks\n\nEach section is written by the script it names; figures are ratios measured in one run.\n"
    )
    cmd = "python " + " ".join(
        [str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]]
    )
    section = (
        f"<!-- {key} -->\n## {title}\n\n{body.strip()}\n\n_Machine: {machine()}. Command: `{cmd}`._\n<!-- /{key} -->\n"
    )
    pattern = re.compile(rf"<!-- {key} -->.*?<!-- /{key} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    OUT.write_text(text)
    print(section)


def run_sweep(
    checkout: Path, config_name: str, d: Path, workers: int, overrides: tuple[str, ...] = (), env: dict | None = None
) -> tuple[float, float, list[dict]]:
    """Run the committed study `sweeps/<config_name>.yaml` with `checkout`'s code (its `src` first on the path)
    into `d/sweep`: (start, end, the jobs' results.json). `checkout` may be another worktree (before/after)."""
    import subprocess
    import time

    from transferlab.sweep import iter_results

    cmd = [sys.executable, str(checkout / "train.py"), "-m", "--config-dir", str(checkout / "sweeps"), "--config-name",
           config_name, f"hydra.sweep.dir={d}/sweep", f"hydra.launcher.n_jobs={workers}", *overrides]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(checkout / "src"), **(env or {})}
    t = time.time()
    subprocess.run(cmd, cwd=checkout, check=True, capture_output=True, env=full_env)
    return t, time.time(), [r for _, r in iter_results(d / "sweep")]
