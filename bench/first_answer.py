"""F1: time from `python train.py <mistake>` to its error message vs `python -c "import torch, lightning"`.

A config mistake should be answered before torch/lightning/transformers are imported (goal <= 2 s idle).
Each command runs to its exit (status 2) in a temp run dir; medians of interleaved repeats.
`--root OTHER_CHECKOUT` times another checkout's code (its src/ first on PYTHONPATH) for a before/after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_section

MISTAKES = {  # what a user types -> what answers it
    "strategy=lorra": "Hydra: unknown choice",
    "plan=true": "command line: a section given a scalar",
    "backbone=llama7b data=digits": "declared modalities",
    "strategy.lr=-1": "numeric range",
    "trainer.max_epochs=-5": "numeric range",
    "head.dropout=1.5": "numeric range",
    "data.train_per_class=0": "data stage (after imports)",
}


def timed(cmd: list[str], root: Path) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    t = time.time()
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    last = (p.stderr.strip().splitlines() or [""])[-1]
    return time.time() - t, p.returncode, last


def one(args: str, root: Path) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as d:
        return timed([sys.executable, str(root / "train.py"), *args.split(), f"hydra.run.dir={d}/run"], root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose train.py and src/ are timed")
    ap.add_argument("--before", type=Path, default=None, help="an older checkout timed in the same run")
    args = ap.parse_args()
    roots = {"after": args.root.resolve(), **({"before": args.before.resolve()} if args.before else {})}
    times: dict[tuple[str, str], list[float]] = {}
    base: list[float] = []
    last: dict[str, str] = {}
    for _ in range(args.repeats):
        base.append(timed([sys.executable, "-c", "import torch, lightning"], ROOT)[0])
        for mistake in MISTAKES:
            for label, root in roots.items():
                secs, rc, msg = one(mistake, root)
                assert rc != 0, f"{mistake}: exited {rc}"
                times.setdefault((mistake, label), []).append(secs)
                last[mistake] = msg if label == "after" else last.get(mistake, msg)
    b = statistics.median(base)
    cols = list(roots)
    rows = [f"| command | answered by | {' | '.join(f'{c} (s)' for c in cols)} | after / import |", "|---|---|"]
    rows[1] += "---|" * (len(cols) + 1)
    for mistake, by in MISTAKES.items():
        med = {c: statistics.median(times[(mistake, c)]) for c in cols}
        rows.append(
            f"| `python train.py {mistake}` | {by} | {' | '.join(f'{med[c]:.2f}' for c in cols)} | "
            f"{med['after'] / b:.2f} |"
        )
    examples = "\n".join(f"- `{m}`: {last[m][:160]}" for m in MISTAKES)
    body = (
        f"Command start -> error message and exit, median of {args.repeats} interleaved repeats; "
        f"`import torch, lightning` alone takes **{b:.2f} s** in the same run.\n\n"
        + "\n".join(rows)
        + f"\n\nThe messages (after):\n{examples}"
    )
    write_section("F1", "F1: time to the first answer for a config mistake", body)


if __name__ == "__main__":
    main()
