"""Resumable, failure-tolerant sweeps: a job that already finished ok is not run again.

Every job writes `results.json` (status ok / failed, resolved config). Re-running the same sweep
command scans the sweep dir, and a job whose resolved config matches an earlier *ok* result is
skipped; missing and failed jobs run. Configs are compared with every run-dir path replaced by a
placeholder, so a job matches wherever (and under whichever subdir name) it ran before.

    python train.py -m strategy=feature_extraction,full seed=0,1,2      # some jobs fail / killed
    python train.py -m strategy=feature_extraction,full seed=0,1,2      # runs only those again
    python train.py -m strategy=feature_extraction,full seed=0,1,2 +rerun=true   # run everything
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("transferlab")

RUN_DIR = "<run_dir>"
# Keys that steer the sweep machinery, not the experiment: never part of a job's identity.
IGNORED_KEYS = ("rerun",)


def _replace(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    if isinstance(node, str) and old and old in node:
        return node.replace(old, new)
    return node


def normalize(config: dict) -> dict:
    """The resolved config with its run dir (`paths.output_dir`) replaced by `<run_dir>`.

    Args:
        config: a resolved config as stored in results.json (`OmegaConf.to_container(cfg, resolve=True)`).
    """
    run_dir = str((config.get("paths") or {}).get("output_dir") or "")
    config = {k: v for k, v in config.items() if k not in IGNORED_KEYS}
    return _replace(config, run_dir.rstrip("/"), RUN_DIR) if run_dir else config


def run_key(config: dict) -> str:
    """A short stable hash of the normalised config: equal keys = the same job."""
    text = json.dumps(normalize(config), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def iter_results(root: Path | str) -> Iterator[tuple[Path, dict]]:
    """Every readable `results.json` under `root` (recursively), with its path; unreadable ones are logged."""
    for path in sorted(Path(root).rglob("results.json")):
        try:
            yield path, json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("skipping unreadable %s: %s", path, e)


def find_finished(sweep_dir: Path | str, config: dict) -> Path | None:
    """The results.json of an earlier ok job under `sweep_dir` with the same normalised config, or None."""
    key = run_key(config)
    for path, result in iter_results(sweep_dir):
        if result.get("status") == "ok" and isinstance(result.get("config"), dict) and run_key(result["config"]) == key:
            return path
    return None


def skip_finished(cfg) -> dict | None:
    """In a multirun, the earlier ok result of this job (then the job is skipped), else None.

    Args:
        cfg: the composed job config (Hydra's `HydraConfig` must be set, as in `train.py -m`).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or cfg.get("rerun", False):
        return None
    config = OmegaConf.to_container(cfg, resolve=True)
    found = find_finished(hc.sweep.dir, config)
    if found is None:
        return None
    log.info("skipping job %s: finished ok before in %s (+rerun=true runs it again)",
             hc.job.override_dirname or hc.job.num, found.parent)
    return json.loads(found.read_text())
