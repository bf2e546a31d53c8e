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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("transferlab")

RUN_DIR = "<run_dir>"
# Keys that steer the sweep machinery or how a run starts, not the experiment: never part of a job's identity
# (`search`: transferlab.search's settings; a job finished by a resume, `ckpt_path=last`, is the same job).
IGNORED_KEYS = ("rerun", "search", "ckpt_path", "overwrite", "logger")
# ... and nested keys of the same kind: where the feature cache lives (its entries are keyed by content, so a job
# gives the same features from any cache dir; bench/p6 runs the size study with a fresh one).
IGNORED_NESTED = {"cache": ("dir",)}
# Top-level keys a study file may add to the base config (transferlab/conf/config.yaml): its own knobs.
STUDY_KEYS = {"defaults", "hydra", "sweep_name", "scale", "grid", "objective", "rerun", "search"}
# Config nodes without `_target_` that run() passes as keyword arguments to a constructor.
NODE_TARGETS = {"trainer": "lightning.pytorch.Trainer"}


def _replace(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    if isinstance(node, str) and old and old in node:
        return node.replace(old, new)
    return node


def _same_numbers(node: Any) -> Any:
    """`node` with every float of integral value as the equal int (`1.0` -> `1`): a YAML default of 1.0 and
    an override `=1` are the same setting. Booleans stay booleans (`True` is not the setting `1`)."""
    if isinstance(node, dict):
        return {k: _same_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_same_numbers(v) for v in node]
    if isinstance(node, float) and node.is_integer():
        return int(node)
    return node


def normalize(config: dict) -> dict:
    """The resolved config with its run dir (`paths.output_dir`) replaced by `<run_dir>` and equal numbers
    written alike (`1.0` as `1`), as jobs are compared (`run_key`) and the report labels them.

    Args:
        config: a resolved config as stored in results.json (`OmegaConf.to_container(cfg, resolve=True)`).
    """
    run_dir = str((config.get("paths") or {}).get("output_dir") or "")
    config = {k: v for k, v in config.items() if k not in IGNORED_KEYS}
    for key, inner in IGNORED_NESTED.items():
        if isinstance(config.get(key), dict):
            config[key] = {k: v for k, v in config[key].items() if k not in inner}
    config = _same_numbers(config)
    return _replace(config, run_dir.rstrip("/"), RUN_DIR) if run_dir else config


def run_key(config: dict) -> str:
    """A short stable hash of the normalised config: equal keys = the same job (`lr=1` and `lr=1.0` too)."""
    text = json.dumps(normalize(config), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def iter_results(root: Path | str) -> Iterator[tuple[Path, dict]]:
    """Every readable `results.json` under `root` (recursively), with its path; unreadable ones are logged.

    Runs set aside under a `replaced/` folder (a job re-run in its dir, `overwrite=true`) are archived, not read.
    """
    for path in sorted(Path(root).rglob("results.json")):
        if "replaced" in path.relative_to(root).parts[:-1]:
            continue
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
    log.info(
        "skipping job %s: finished ok before in %s (+rerun=true runs it again)",
        hc.job.override_dirname or hc.job.num,
        found.parent,
    )
    return {**json.loads(found.read_text()), "_skipped": True}  # marked for the sweep's progress line


def objective_value(result: dict | None, metric: str) -> float:
    """The value an Optuna search optimises (`transferlab.search`): `result["metrics"][metric]`, NaN if it failed.

    Args:
        result: a run result (None when the job failed before writing one).
        metric: a metric name such as "val/acc" (the study file's `objective`).
    """
    from transferlab.errors import ConfigError

    if not result or result.get("status") != "ok":
        return float("nan")
    metrics = result.get("metrics") or {}
    if metric not in metrics:
        raise ConfigError(
            f"objective '{metric}' is not among the run's metrics ({', '.join(sorted(metrics))}); "
            "set `objective:` in the study file to one of them."
        )
    value = metrics[metric]
    return float("nan") if value is None else float(value)


def _accepts(target: str | None, key: str) -> bool:
    """Whether the callable at dotted path `target` takes a `key` argument (or **kwargs)."""
    import inspect

    from hydra.utils import get_object

    if not target:
        return False
    try:
        params = inspect.signature(get_object(target)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return False
    return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _unknown_keys(study: dict, base: dict, prefix: str = "", target: str | None = None) -> list[str]:
    """Paths set by `study` that neither `base` has nor the node's constructor (`_target_`) accepts."""
    out = []
    for k, v in study.items():
        if k not in base:
            if not _accepts(target, k):
                out.append(f"{prefix}{k}")
        elif isinstance(v, dict) and isinstance(base[k], dict):
            sub_target = base[k].get("_target_") or NODE_TARGETS.get(f"{prefix}{k}")
            out += _unknown_keys(v, base[k], f"{prefix}{k}.", sub_target)
    return out


def compose_study(config_dir: str | None, config_name: str, overrides: list[str]):
    """Compose a study file as `train.py --config-dir DIR --config-name NAME` would (the hydra node kept).

    `python -m transferlab.search` composes its study and each of its trials with it.
    """
    from hydra import compose
    from hydra._internal.hydra import Hydra  # as train.py's --config-dir: that dir first, then the package
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    path = create_config_search_path(str(Path(config_dir).resolve()) if config_dir else None)
    path.append("main", "pkg://transferlab.conf", anchor="main")
    Hydra.create_main_hydra2(task_name="train", config_search_path=path)
    return compose(config_name, overrides=list(overrides), return_hydra_config=True)


_CHECKED: set[tuple] = set()  # (study file, size, mtime, group choices) that passed `check_study` in this process


def check_study(cfg) -> None:
    """Raise `ConfigError` when the study file (`--config-name X` from sweeps/) sets unknown keys.

    A key is known when the base config has it or the node's constructor takes it (e.g. any
    `lightning.Trainer` argument under `trainer`). A typo such as `trainer.max_epoch` would
    otherwise reach every job as a late TypeError.
    Top-level study knobs (`STUDY_KEYS`) are allowed. No-op for runs of transferlab/conf/config.yaml itself.
    """
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from transferlab.errors import ConfigError

    hc = HydraConfig.get()
    name = hc.job.config_name
    files = [Path(src.path) / f"{name}.yaml" for src in hc.runtime.config_sources if src.schema == "file"]
    path = next((f for f in files if f.is_file()), None)
    if name == "config" or path is None:
        return
    choices = [f"{g}={c}" for g, c in hc.runtime.choices.items() if c is not None and not g.startswith("hydra")]
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns, tuple(choices))
    if memo in _CHECKED:  # a warm sweep worker checks each study file and choice of groups once
        return
    study = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    base = OmegaConf.to_container(compose("config", overrides=choices), resolve=False)
    unknown = [k for k in study if k not in base and k not in STUDY_KEYS]
    unknown += _unknown_keys({k: v for k, v in study.items() if k in base}, base)
    if unknown:
        raise ConfigError(
            f"study file {path} sets {', '.join(unknown)}: neither keys of the composed config "
            f"(transferlab/conf/config.yaml "
            f"with {', '.join(choices)}) nor arguments of their constructors. Fix the spelling (e.g. "
            f"trainer.max_epochs); a study's own top-level knobs are {', '.join(sorted(STUDY_KEYS))}."
        )
    _CHECKED.add(memo)
