"""P4: time from `python train.py` start to the first optimizer step vs `python -c "import torch, lightning"`.

Interleaved repeats, medians. The breakdown comes from the run's own timestamps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_section


def import_baseline() -> float:
    t = time.time()
    subprocess.run([sys.executable, "-c", "import torch, lightning"], check=True)
    return time.time() - t


def first_step() -> float:
    with tempfile.TemporaryDirectory() as d:
        t = time.time()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "train.py"),
                "trainer.max_steps=1",
                "trainer.limit_val_batches=0",
                "trainer.limit_test_batches=1",
                "trainer.enable_progress_bar=false",
                "logger=none",
                "cache=off",
                "~callbacks.checkpoint",
                "+callbacks.timer._target_=transferlab.callbacks.timer.StepTimer",
                f"hydra.run.dir={d}",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return json.loads((Path(d) / "results.json").read_text())["timing"]["first_step_unix"] - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base, first = [], []
    for _ in range(args.repeats):
        base.append(import_baseline())
        first.append(first_step())
    b, f = statistics.median(base), statistics.median(first)
    body = (
        f"Default job (EfficientNet-Lite0, digits), command start -> first optimizer step, median of {args.repeats} "
        f"interleaved repeats.\n\n| | seconds |\n|---|---|\n| `import torch, lightning` | {b:.2f} |\n"
        f"| `python train.py` to first step | {f:.2f} |\n\n**P4 ratio: {f / b:.2f}** (goal <= 1.5)."
    )
    write_section("P4", "P4: time to first optimizer step", body)


if __name__ == "__main__":
    main()
