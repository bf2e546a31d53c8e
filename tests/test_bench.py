"""The benchmark scripts run (smoke): the GPU mode's code path on the CPU with tiny models."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_gpu_throughput_script_runs_on_cpu():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_throughput.py"),
            "--device",
            "cpu",
            "--tiny",
            "--steps",
            "1",
            "--vit-batch",
            "2",
            "--bert-batch",
            "2",
            "--no-write",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "images/s" in out.stdout and "tokens/s" in out.stdout
