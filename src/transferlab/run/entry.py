"""`main(cfg)`: what `train.py` / `transferlab-train` call inside Hydra (single run or sweep job)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from transferlab.errors import TransferlabError
from transferlab.infra import redact
from transferlab.infra.process import keep_between_runs, release_memory
from transferlab.run.recipe import config_tree, run

log = logging.getLogger("transferlab")


def main(cfg: DictConfig) -> dict | float | None:
    """Entry used by `train.py`: user errors become one clear message, not a traceback.

    In a multirun, a failed job is recorded (results.json says failed) and the sweep goes on, and a
    job that already finished ok in this sweep dir is skipped (`transferlab.sweep`). With
    `objective: <metric>` in the config (Optuna studies) the return value is that metric (NaN if failed).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from transferlab.sweep import check_study, objective_value, skip_finished

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:  # this process may run more jobs: keep what they can share (weights, cache entries)
        keep_between_runs()
    redact.register(config_tree(cfg))
    redact.install_log_filter()
    redact.scrub_files(Path(HydraConfig.get().runtime.output_dir) / ".hydra")  # Hydra saved the overrides as given
    plan = cfg.get("plan")
    if isinstance(plan, DictConfig) and plan.get("enabled") is True:  # the planner: nothing loaded or trained
        # (a plan.enabled that is not a bool is refused by the run's validation, with results.json)
        from transferlab.plan import main as plan_main

        sys.exit(plan_main([a for a in HydraConfig.get().overrides.task if not a.startswith("plan.enabled")]))
    try:
        check_study(cfg)
        result = skip_finished(cfg) or run(cfg)
    except TransferlabError as e:
        if not multirun:
            print(f"\nerror: {redact.scrub_text(str(e))}", file=sys.stderr)
            sys.exit(2)
        log.error("job failed: %s", e)
        result = None
    except Exception:
        if not multirun:
            raise
        log.exception("job failed")
        result = None
    if multirun:
        release_memory()  # a warm worker: back near its first job's size before the next job
    return objective_value(result, cfg.get("objective")) if cfg.get("objective") else result
