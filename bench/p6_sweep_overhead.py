"""P6: wall time of the committed strategies-vs-size study vs the pure training time of its jobs.

Runs `sweeps/strategies_vs_datasize.yaml` (scale=small: 36 jobs, joblib with 2 workers) into a fresh sweep dir
and compares the sweep's wall time with the sum of its jobs' fit times (results.json `estimate.actual_fit_s`,
each measured inside its worker, so contention between the 2 workers is in both figures). Overhead =
wall x workers / sum(fit) - 1: process start-up, imports, data and backbone loading, feature caching, testing
and result writing, everything that is not optimizer steps.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from common import ROOT, run_sweep, write_section


def breakdown(results: list[dict], t0: float, t1: float, workers: int) -> dict[str, float]:
    """Worker-seconds of the sweep by where they went: each job's stages (results.json `stage_s`), the
    gaps between one job's end and the next job's start on the same worker slot (Hydra's job set-up, result
    writing, and a replaced worker process's imports), start-up (command start -> a slot's first job) and
    the tail (a slot idle after its last job while another still runs). Jobs are placed on slots in start
    order, each on the slot free earliest (what the pool does), so a worker process replaced mid-sweep
    (loky restarts a worker whose memory grew by 300 MB) stays on its slot."""
    out: dict[str, float] = {}
    for r in results:
        for stage, s in (r.get("stage_s") or {}).items():
            out[stage] = out.get(stage, 0.0) + s
    free = [t0] * workers  # when each slot became free
    gaps = startup = 0.0
    for r in sorted(results, key=lambda r: r["started_unix"]):
        i = min(range(workers), key=lambda k: free[k])
        idle = max(0.0, r["started_unix"] - free[i])
        if free[i] == t0:
            startup += idle
        else:
            gaps += idle
        free[i] = r["started_unix"] + r["time_s"]
    out["between jobs"], out["start-up"], out["tail"] = gaps, startup, sum(max(0.0, t1 - f) for f in free)
    out["other (job bookkeeping outside the stages)"] = workers * (t1 - t0) - sum(out.values())
    return out


def sweep(checkout: Path, d: Path, workers: int) -> tuple[float, float, float, list[dict]]:
    """Run the study with `checkout`'s code and configs into `d`: (start, end, wall, results)."""
    # a cold feature cache: the study pays for its own features
    t, t1, results = run_sweep(checkout, "strategies_vs_datasize", d, workers, (f"cache.dir={d}/cache",))
    return t, t1, t1 - t, results


def fit_of(results: list[dict]) -> float:
    return sum((r.get("estimate") or {}).get("actual_fit_s") or 0.0 for r in results if r.get("status") == "ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="keep the sweep dir here (default: a temp dir, deleted)")
    ap.add_argument("--before", help="another checkout (e.g. a git worktree of an earlier commit): its study runs "
                    "first, the same day on the same machine, for a before/after row", default=None)  # fmt: skip
    args = ap.parse_args()
    before = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            _, _, b_wall, b_results = sweep(Path(args.before).resolve(), Path(tmp, "before"), args.workers)
            rev = subprocess.run(
                ["git", "-C", args.before, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            )
            before = (rev.stdout.strip() or args.before, b_wall, fit_of(b_results), len(b_results))
        d = Path(args.keep or tmp)
        t, t1, wall, results = sweep(ROOT, d, args.workers)
    ok = [r for r in results if r.get("status") == "ok"]
    fit = sum((r.get("estimate") or {}).get("actual_fit_s") or 0.0 for r in ok)
    run = sum(r.get("time_s") or 0.0 for r in ok)
    by: dict[str, float] = {}
    for r in ok:
        by[r["strategy"]] = by.get(r["strategy"], 0.0) + ((r.get("estimate") or {}).get("actual_fit_s") or 0.0)
    overhead = wall * args.workers / fit - 1
    rows = "\n".join(f"| {s} | {v:.0f} |" for s, v in sorted(by.items()))
    parts = breakdown(ok, t, t1, args.workers) if all("stage_s" in r for r in ok) else {}
    pids = len({r.get("pid") for r in ok})
    split = "\n".join(f"| {k} | {v:.1f} |" for k, v in parts.items())
    body = (
        f"`python train.py -m --config-dir sweeps --config-name strategies_vs_datasize` (scale=small), "
        f"{len(results)} jobs ({len(ok)} ok), {args.workers} joblib workers ({pids} worker processes over the sweep), "
        "cold feature cache.\n\n"
        f"| | seconds |\n|---|---|\n| sweep wall time | {wall:.0f} |\n"
        f"| sum of the jobs' fit times (optimizer steps, validation) | {fit:.0f} |\n"
        f"| sum of the jobs' run times (results.json `time_s`: build, cache, fit, test) | {run:.0f} |\n\n"
        f"Fit time by strategy (s):\n\n| strategy | fit |\n|---|---|\n{rows}\n\n"
        + (
            f"Where the {args.workers} workers' {args.workers * wall:.0f} worker-seconds went (run stages from "
            f"results.json `stage_s`; `fit` includes validation):\n\n| part | worker-seconds |\n|---|---|\n{split}\n\n"
            if parts
            else ""
        )
        + f"**P6 overhead: wall x {args.workers} / sum(fit) - 1 = {overhead:.0%}** (goal <= 15 %)."
    )
    if before:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        label, b_wall, b_fit, b_n = before
        body += (
            "\n\nBefore/after, the same study run back to back on this machine (cold cache each):\n\n"
            "| code | jobs | sweep wall (s) | sum of fit (s) | overhead |\n|---|---|---|---|---|\n"
            f"| before ({label}) | {b_n} | {b_wall:.0f} | {b_fit:.0f} | {b_wall * args.workers / b_fit - 1:.0%} |\n"
            f"| after ({head.stdout.strip()}) | {len(results)} | {wall:.0f} | {fit:.0f} | {overhead:.0%} |"
        )
    write_section("P6", "P6: overhead of the strategies-vs-size study over its jobs' training", body)


if __name__ == "__main__":
    main()
