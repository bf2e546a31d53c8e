"""Read every results.json of a multirun dir into one table of runs (one row per job).

Each run gets a `method` label: the strategy (and adaptation, when one is set) plus any other
config key that varies between runs of the same strategy (e.g. `strategy.lr=0.01` in a
learning-rate study). The seed and the training-set size are the axes, never part of the label.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from transferlab.errors import DataError
from transferlab.sweep import iter_results, normalize, run_key

# Keys that vary by design between seeds / sizes of one configuration (or are bookkeeping).
AXIS_KEYS = {"seed", "data.seed", "data.train_per_class", "data.train_fraction", "rerun"}
# Config nodes that identify the task: results of different tasks can't share one table.
TASK_KEYS = ("data._target_", "data.source._target_", "data.target._target_", "data.root", "data.target_root")


def _flatten(node, prefix: str = "") -> dict:
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = repr(v) if isinstance(v, (list, dict)) else v
    return out


def target_metric(metrics: dict) -> str:
    """test/target_acc for a domain pair, else test/acc."""
    return "test/target_acc" if "test/target_acc" in metrics else "test/acc"


def _short(value) -> str:
    """`value` for a method label: floats as `%g` where that reads back as the same number, else in full, so
    settings that are different jobs (`transferlab.sweep.run_key`) never share a label."""
    if not isinstance(value, float):
        return str(value)
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def load_runs(root: Path | str) -> pd.DataFrame:
    """One row per job (latest result per identical config, ok preferred over failed).

    Raises:
        DataError: `root` is not a directory, holds no results.json, or mixes different tasks.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"'{root}' is not a directory: pass a multirun dir, e.g. multirun/strategies_vs_datasize/small."
        )
    found = list(iter_results(root))
    if not found:
        raise DataError(
            f"no results.json under '{root}': it is not a sweep dir (or no job has finished yet). "
            "Run a sweep first, e.g. python train.py -m --config-dir sweeps --config-name strategies_vs_datasize"
        )
    latest: dict[str, tuple] = {}
    for path, res in found:
        if not isinstance(res.get("config"), dict) or "status" not in res:
            raise DataError(
                f"{path} is not a transferlab results.json (no status/config); remove it or pass another dir."
            )
        key = run_key(res["config"])
        rank = (res["status"] == "ok", path.stat().st_mtime)
        if key not in latest or rank > latest[key][0]:
            latest[key] = (rank, path, res)
    rows = [_row(path, res, root) for _, path, res in latest.values()]
    runs = pd.DataFrame(rows)
    _check_one_task(runs)
    runs["method"] = _method_labels(runs)
    return runs.sort_values(["method", "train_size", "seed"], na_position="first").reset_index(drop=True)


def _row(path: Path, res: dict, root: Path) -> dict:
    metrics = res.get("metrics") or {}
    flat = _flatten(normalize(res["config"]))
    params = res.get("params") or {}
    metric = target_metric(metrics)
    return {
        "run_dir": str(path.parent.relative_to(root)),
        "status": res["status"],
        "error": res.get("error"),
        "strategy": res.get("strategy"),
        "adaptation": res.get("adaptation"),
        "data": res.get("data"),
        "norm": _norm(res, flat),
        "selection": res.get("selection"),
        "seed": res.get("seed"),
        "train_per_class": res.get("train_per_class"),
        "train_fraction": flat.get("data.train_fraction"),
        "train_size": res.get("train_size"),
        "metric_name": metric,
        "metric": metrics.get(metric),
        "val_acc": metrics.get(metric.replace("test/", "val/", 1)),
        **{f"also:{k}": v for k, v in metrics.items() if k.startswith("test/") and k.endswith("acc") and k != metric},
        "trainable": params.get("trainable"),
        "total": params.get("total"),
        "time_s": res.get("time_s"),
        "peak_mem_mb": res.get("peak_mem_mb"),
        "backbone": (res.get("backbone") or {}).get("name"),
        "license": _license(res),
        "task": " | ".join(f"{k}={flat[k]}" for k in TASK_KEYS if flat.get(k) is not None),
        "_flat": flat,
    }


def _norm(res: dict, flat: dict) -> str:
    """The batch-norm policy the run trained with (+ "+adabn" when statistics were re-estimated); older
    results, from before the policy existed, trained as `train` does."""
    norm = res.get("norm") or {}
    policy = norm.get("policy") or flat.get("strategy.norm") or "train"
    return policy + ("+adabn" if norm.get("adabn") and policy != "adabn" else "")


def _license(res: dict) -> str:
    """ "<licence>, from <where>" as resolved by the run (older results: the backbone's licence only)."""
    lic = res.get("license") or {}
    if lic:
        return f"{lic.get('license')}, from {lic.get('source')}"
    return str((res.get("backbone") or {}).get("license"))


def _check_one_task(runs: pd.DataFrame) -> None:
    tasks = runs.groupby("task", dropna=False)["run_dir"].agg(["count", "first"])
    metrics = set(runs.loc[runs.status == "ok", "metric_name"])
    if len(tasks) > 1 or len(metrics) > 1:
        lines = "; ".join(f"{t or 'unknown'} ({n} runs, e.g. {d})" for t, (n, d) in tasks.iterrows())
        raise DataError(
            f"the runs mix different tasks, which one table can't compare: {lines}"
            f"{'; target metrics ' + ', '.join(sorted(metrics)) if len(metrics) > 1 else ''}. "
            "Report each task's sweep dir separately."
        )


def _method_labels(runs: pd.DataFrame) -> list[str]:
    base = [s if a in (None, "none") else f"{s}+{a}" for s, a in zip(runs.strategy, runs.adaptation, strict=False)]
    flats = list(runs["_flat"])
    extra: set[str] = set()
    for b in set(base):
        group = [f for f, bb in zip(flats, base, strict=False) if bb == b]
        keys = set().union(*group) - AXIS_KEYS
        extra |= {k for k in keys if len({repr(f.get(k)) for f in group}) > 1}
    extra = sorted(k for k in extra if not k.startswith(("hydra.", "logger.")))  # trackers: not the method
    return [
        b + "".join(f" {k.split('.', 1)[-1] if k.startswith('strategy.') else k}={_short(f.get(k))}" for k in extra)
        for b, f in zip(base, flats, strict=False)
    ]
