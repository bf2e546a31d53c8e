"""P6: wall time of the committed strategies-vs-size study vs the pure training time of its jobs.

Runs `sweeps/strategies_vs_datasize.yaml` (scale=small: 36 jobs, joblib with 2 workers) into a fresh sweep dir
and compares the sweep's wall time with the sum of its jobs' fit times (results.json `estimate.actual_fit_s`,
each measured inside its worker, so contention between the 2 workers is in both figures). Overhead =
wall x workers / sum(fit) - 1: process start-up, imports, data and backbone loading, feature caching, testing
and result writing, everything that is not optimizer steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            "--config-dir",
            str(ROOT / "sweeps"),
            "--config-name",
            "strategies_vs_datasize",
            f"hydra.sweep.dir={d}/sweep",
            f"hydra.launcher.n_jobs={args.workers}",
            f"cache.dir={d}/cache",  # a cold feature cache: the study pays for its own features
        ]
        t = time.time()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        wall = time.time() - t
        results = [json.loads(p.read_text()) for p in Path(d, "sweep").rglob("results.json")]
    ok = [r for r in results if r.get("status") == "ok"]
    fit = sum((r.get("estimate") or {}).get("actual_fit_s") or 0.0 for r in ok)
    run = sum(r.get("time_s") or 0.0 for r in ok)
    by: dict[str, float] = {}
    for r in ok:
        by[r["strategy"]] = by.get(r["strategy"], 0.0) + ((r.get("estimate") or {}).get("actual_fit_s") or 0.0)
    overhead = wall * args.workers / fit - 1
    rows = "\n".join(f"| {s} | {v:.0f} |" for s, v in sorted(by.items()))
    body = (
        f"`python train.py -m --config-dir sweeps --config-name strategies_vs_datasize` (scale=small), "
        f"{len(results)} jobs ({len(ok)} ok), {args.workers} joblib workers, cold feature cache.\n\n"
        f"| | seconds |\n|---|---|\n| sweep wall time | {wall:.0f} |\n"
        f"| sum of the jobs' fit times (optimizer steps, validation) | {fit:.0f} |\n"
        f"| sum of the jobs' run times (results.json `time_s`: build, cache, fit, test) | {run:.0f} |\n\n"
        f"Fit time by strategy (s):\n\n| strategy | fit |\n|---|---|\n{rows}\n\n"
        f"**P6 overhead: wall x {args.workers} / sum(fit) - 1 = {overhead:.0%}** (goal <= 15 %)."
    )
    write_section("P6", "P6: overhead of the strategies-vs-size study over its jobs' training", body)


if __name__ == "__main__":
    main()
