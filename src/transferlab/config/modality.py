"""What a backbone takes and what data yields, declared in the config so it is known before anything loads.

Backbone configs declare `modality` (image | text) and, where the global default data (`data: digits`, images)
can't feed them, `default_data` (instructions for causal LMs, reviews for encoders). Data configs declare
`modality`. These keys are declarations, not constructor arguments: `config.instantiate.build` drops them, and
`tests/test_config.py` holds each declaration equal to its class's own (`Backbone.kind`,
`ClassificationData.modality`).

`auto_data(argv)`: a command that names a backbone but no data (`python train.py backbone=llama7b
strategy=lora`) gets the backbone's default data when the global default does not match its inputs; an
explicit `data=` always wins. The choice is printed and recorded in results.json (`data_auto`).
"""

from __future__ import annotations

import copy
import os
from typing import Any

DECLARED = ("modality", "default_data")  # config keys that describe a node; never passed to its constructor
ENV = "TRANSFERLAB_DATA_AUTO"  # how the command line tells the run (and results.json) that data was chosen for it
_SWEEP_SYNTAX = (",", "range(", "choice(", "glob(", "interval(", "tag(")


def strip(node: Any) -> Any:
    """`node` without its declared keys (a copy; interpolations still resolve against the full config)."""
    from omegaconf import DictConfig, open_dict

    if isinstance(node, DictConfig) and any(k in node for k in DECLARED):
        node = copy.deepcopy(node)
        with open_dict(node):
            for k in DECLARED:
                node.pop(k, None)
    elif isinstance(node, dict) and any(k in node for k in DECLARED):
        node = {k: v for k, v in node.items() if k not in DECLARED}
    return node


def takes(kind: str) -> str:
    """The inputs a backbone kind takes: a causal LM takes text."""
    return {"causal_lm": "text"}.get(kind, kind)


def _group_args(argv: list[str]) -> dict[str, str] | None:
    """{group: choice} of argv's group overrides; None when the command is not a plain one to reason about."""
    if any(a.startswith(("--config-name", "-cn", "--config-dir", "-cd", "--config-path", "-cp")) for a in argv):
        return None  # a study file sets its own data
    groups = {}
    for a in argv:
        if a.startswith("-") or "=" not in a:
            continue
        key, value = a.split("=", 1)
        key = key.lstrip("+")
        if key.startswith(("~", "hydra")) or "." in key or "@" in key:
            continue
        if any(s in value for s in _SWEEP_SYNTAX):
            if key in ("backbone", "data", "experiment"):
                return None  # a sweep over backbones or data: each job is checked as it stands
            continue
        groups[key] = value
    return groups


def auto_data(argv: list[str]) -> tuple[list[str], str | None]:
    """(argv, note): argv + `data=<backbone default>` when no data was named and the default data does not fit."""
    groups = _group_args(argv)
    if not groups or "backbone" not in groups or "data" in groups:
        return argv, None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from transferlab.config.compose import CONF

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[f"{k}={v}" for k, v in groups.items()], return_hydra_config=True)
    except Exception:  # Hydra answers a bad choice itself, with its own message, when the run composes
        return argv, None
    finally:
        GlobalHydra.instance().clear()
    backbone, data = cfg.get("backbone") or {}, cfg.get("data") or {}
    want, have, default = backbone.get("modality"), data.get("modality"), backbone.get("default_data")
    if not (want and have and default) or want == have or cfg.hydra.runtime.choices.get("experiment"):
        return argv, None
    data_choice = cfg.hydra.runtime.choices.get("data")
    note = (
        f"backbone={groups['backbone']} takes {want} inputs and data={data_choice} is {have} data: "
        f"using its default data={default} (name data=... to choose)"
    )
    return [*argv, f"data={default}"], note


def note_from_env() -> str | None:
    return os.environ.get(ENV) or None
