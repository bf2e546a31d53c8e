"""Sweep progress: how many jobs, how many already done, and an ETA as jobs finish.

A Hydra callback (`hydra.callbacks.sweep_progress` in conf/config.yaml). At the start of a multirun (main
process) it counts the jobs of the sweep (command-line sweeps times the study's `hydra.sweeper.params`) and the
results already finished ok in the sweep dir, and prints both. Each job, in whichever process or node runs it,
appends one line to `<sweep dir>/.progress.jsonl` when it ends and prints `sweep: 5/12 done (2 skipped, 1
failed), ETA ~3.1 min` at the pace of the jobs so far. Works under every launcher (the state is on disk).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("transferlab")
HEADER, LINES = ".progress.json", ".progress.jsonl"


def count_jobs(config) -> int | None:
    """Jobs of the multirun `config` (the basic sweeper's product of sweep values); None when not enumerable."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
    for arg in config.hydra.overrides.task:
        key, _, value = str(arg).partition("=")
        params[key] = value
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    total = 1
    for o in parsed:
        if o.is_sweep_override():
            try:
                total *= len(list(o.sweep_iterator()))
            except Exception:  # an interval (a search, not a grid): no count
                return None
    return total


def _clock(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class SweepProgress(Callback):
    """Prints the job count and the jobs already done at the start of a multirun, and an ETA as jobs end."""

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        from transferlab.sweep import iter_results

        sweep_dir = Path(config.hydra.sweep.dir)
        total = count_jobs(config)
        done = sum(1 for _, r in iter_results(sweep_dir) if r.get("status") == "ok") if sweep_dir.is_dir() else 0
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / HEADER).write_text(json.dumps({"total": total, "start": time.time(), "finished_before": done}))
        (sweep_dir / LINES).unlink(missing_ok=True)
        log.info(
            "sweep: %s jobs%s",
            total if total is not None else "an open number of",
            f"; {done} finished ok before in {sweep_dir} (skipped where their config matches)" if done else "",
        )

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / HEADER).is_file():
            return
        value = getattr(job_return, "_return_value", None)
        status = value.get("status", "?") if isinstance(value, dict) else ("failed" if value is None else "ok")
        line = {"t": time.time(), "status": status, "skipped": isinstance(value, dict) and bool(value.get("_skipped"))}
        with open(sweep_dir / LINES, "a") as f:  # one short append per job: atomic on POSIX
            f.write(json.dumps(line) + "\n")
        log.info("%s", summary(sweep_dir))


def summary(sweep_dir: Path) -> str:
    """`sweep: 5/12 done (2 skipped, 1 failed), ETA ~3.1 min` from the sweep dir's progress files."""
    head = json.loads((sweep_dir / HEADER).read_text())
    lines = [json.loads(x) for x in (sweep_dir / LINES).read_text().splitlines() if x.strip()]
    done, total = len(lines), head.get("total")
    skipped = sum(x["skipped"] for x in lines)
    failed = sum(x["status"] == "failed" for x in lines)
    extra = ", ".join(p for p in (f"{skipped} skipped" if skipped else "", f"{failed} failed" if failed else "") if p)
    text = f"sweep: {done}/{total if total is not None else '?'} done" + (f" ({extra})" if extra else "")
    ran = [x for x in lines if not x["skipped"]]
    if total is None or not ran or done >= total:
        return text
    elapsed = max(x["t"] for x in lines) - head["start"]
    eta = elapsed / len(ran) * (total - done)  # at the pace so far (parallel workers included)
    return text + (f", ETA ~{_clock(eta)}" if math.isfinite(eta) else "")
