"""`validate(cfg)`: everything checkable before any model or data is loaded, in one pass.

Schema (`transferlab.config.schema`: unknown keys with a did-you-mean, wrong types, missing values,
ranges), then the compatibility rules on the classes the config names (`transferlab.config.rules`),
the machine (a GPU config without CUDA) and local model files (`transferlab.config.files`). All
problems of one kind are reported together, in one `ConfigError`.
"""

from __future__ import annotations

import difflib

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transferlab.config import files, rules, schema
from transferlab.errors import ConfigError


def validate(cfg: DictConfig) -> None:
    """Raise `ConfigError` (or `WeightsError` for local model files) for a config that can't run.

    Cheap: imports the targets' modules but builds nothing and reads no weights or data.
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            "; ".join(f"{k} is required but has no value (??? in its config file)" for k in missing)
            + f". Set it on the command line, e.g. `python train.py ... {missing[0]}=...`."
        )
    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"the config can't be resolved: {e}".replace("\n", " ")) from None
    problems = schema.problems(tree)
    if problems:
        raise ConfigError("invalid config: " + " ".join(problems))
    rules.check_config(tree)
    rules.check_accelerator(tree)
    files.check_backbone_files(tree)


# -- Hydra's own composition errors ------------------------------------------------------------------
def override_hints(argv: list[str]) -> list[str]:
    """Did-you-mean lines for `key=value` overrides naming keys the composed config lacks.

    Used after Hydra refused an override (`Key 'train_per_clas' is not in struct`), which lists no
    suggestion: the config is composed again with the group choices of `argv` only.
    """
    from transferlab.config.compose import compose

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    groups = [a for a in args if "." not in a.split("=", 1)[0] and not a.startswith(("+", "~", "hydra"))]
    try:
        cfg = compose(groups, out_dir=".")
    except Exception:  # hints are best effort; Hydra's own message was printed
        return []
    hints = []
    for a in args:
        key = a.split("=", 1)[0]
        if a.startswith(("+", "~", "hydra")) or "." not in key:
            continue
        parent, leaf = key.rsplit(".", 1)
        node = OmegaConf.select(cfg, parent, default=None)
        if isinstance(node, DictConfig) and leaf not in node:
            close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1, cutoff=0.6)
            if close:
                hints.append(f"Did you mean {parent}.{close[0]}? ({key} is not a key of the config)")
    return hints
