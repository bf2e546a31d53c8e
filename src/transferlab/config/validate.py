"""`validate(cfg)`: everything checkable before any model or data is loaded, in one pass.

Schema (`transferlab.config.schema`: unknown keys with a did-you-mean, wrong types, missing values,
ranges), then the compatibility rules on the classes the config names (`transferlab.config.rules`),
the machine (a GPU config without CUDA) and local model files (`transferlab.config.files`). All
problems of one kind are reported together, in one `ConfigError`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transferlab.config import files, machine, ranges, rules, schema
from transferlab.config import groups as layer_groups
from transferlab.errors import ConfigError


def validate(cfg: DictConfig) -> None:
    """Raise `ConfigError` (or `WeightsError` for local model files) for a config that can't run.

    Cheap: imports the targets' modules but builds nothing and reads no weights or data. The checks that
    need no import (missing values, declared modalities, shapes, numeric ranges) come first, so the common
    mistakes are answered before torch is imported (`bench/first_answer.py`).
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
    rules.check_declared_modality(tree)  # declared inputs vs data, before the schema imports any target
    problems = schema.static_problems(tree) + ranges.cpu_devices(tree)  # no import: answered in well under 2 s
    if problems:
        raise ConfigError("invalid config: " + " ".join(problems))
    problems = schema.problems(tree)
    if problems:
        raise ConfigError("invalid config: " + " ".join(problems))
    rules.check_config(tree)
    rules.check_sizes(tree)
    layer_groups.check_groups(tree)  # before any weights: a hub model is not downloaded to be refused
    rules.check_accelerator(tree)
    machine.check_rendezvous(tree)  # a DDP run on a node whose loopback is down: at once, not after its timeout
    files.check_backbone_files(tree)
    files.check_logger_dirs(tree)


# -- Hydra's own composition errors ------------------------------------------------------------------
def override_hints(argv: list[str]) -> list[str]:
    """Did-you-mean lines for `key=value` overrides naming keys the composed config lacks.

    Used after Hydra refused an override (`Key 'train_per_clas' is not in struct`), which lists no
    suggestion: the config is composed again with the group choices of `argv` only. In a multirun, a fixed
    `group.key=value` next to a swept `group=a,b` that some of the swept choices have is explained: Hydra sets
    it before the sweep, on the group's default (a sweep of the command line or of the study file's
    `hydra.sweeper.params`).
    """
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    groups = [a for a in args if "." not in a.split("=", 1)[0] and not a.startswith(("+", "~", "hydra"))]
    on_command_line = {a.split("=", 1)[0] for a in groups}  # replaces the study file's sweep of that group
    study = {g: sweep for g, sweep in _study_sweeps(argv).items() if g not in on_command_line}
    swept = study | {a.split("=", 1)[0]: a for a in groups if _sweep_choices(a) is not None}
    plain = [a for a in groups if a.split("=", 1)[0] not in swept]
    cfg = _composed(plain)
    if cfg is None:  # hints are best effort; Hydra's own message was printed
        return []
    hints, by_group = [], {}  # group -> {swept choice: its composed config}, composed once per group
    for a in args:
        key, value = a.split("=", 1)
        if a.startswith(("+", "~", "hydra")) or "." not in key:
            continue
        parent, leaf = key.rsplit(".", 1)
        group, base = key.split(".", 1)[0], cfg
        if group in swept:  # the key belongs to a group the command sweeps: judge it by the swept choices
            if group not in by_group:
                by_group[group] = {v: _composed([*plain, f"{group}={v}"]) for v in _sweep_choices(swept[group])}
            choices = by_group[group]
            configs = [c for c in choices.values() if c]
            having = [v for v, c in choices.items() if _has(c, parent, leaf)]
            if having:
                if not _has(cfg, parent, leaf) and _sweep_choices(a) is None:
                    fix = (
                        f"Sweep it too, {key}=choice({value}), or run one command per {group}."
                        if len(having) == len(choices)  # every swept choice takes it per job
                        else f"Only {group}={','.join(having)} of the swept choices have it: run those with {a} "
                        f"in one command and the others without it in another."
                    )
                    hints.append(
                        f"In a multirun Hydra sets {a} before it sweeps {swept[group]}, on the default {group}, "
                        f"which has no such key. {fix}"
                    )
                continue
            base = configs[0] if configs else cfg  # no swept choice has it: a misspelling of the first one's keys?
        node = OmegaConf.select(base, parent, default=None, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig) and leaf not in node.keys():  # `in` is False for a ??? value
            close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1, cutoff=0.6)
            if close:
                hints.append(f"Did you mean {parent}.{close[0]}? ({key} is not a key of the config)")
    return hints


def _study_sweeps(argv: list[str]) -> dict[str, str]:
    """`{group: "group=a,b"}` for the config groups a study file (`--config-dir D --config-name N`) sweeps in its
    `hydra.sweeper.params`, resolved within the file after the command line's overrides of its own keys
    (e.g. `scale=full`). Empty when there is no such file or it can't be read."""
    flags = {"--config-dir": "dir", "-cd": "dir", "--config-name": "name", "-cn": "name"}
    opts = {flags[f]: v for f, v in zip(argv, argv[1:], strict=False) if f in flags}
    opts |= {flags[f]: v for f, _, v in (a.partition("=") for a in argv) if f in flags and v}  # --config-dir=D
    path = Path(opts.get("dir", ".")) / f"{opts.get('name', '')}.yaml"
    if "name" not in opts or not path.is_file():
        return {}
    try:
        study = OmegaConf.load(path)
        for a in argv:
            key, _, value = a.partition("=")
            if value and not a.startswith(("-", "+", "~", "hydra")) and OmegaConf.select(study, key) is not None:
                OmegaConf.update(study, key, value)
        params = OmegaConf.to_container(study.hydra.sweeper.params, resolve=True)
    except Exception:  # best effort: Hydra's own message was printed
        return {}
    out = {}
    for group, value in (params or {}).items():
        a = f"{group}={value}"
        if "." not in str(group) and _sweep_choices(a) is not None:
            out[str(group)] = a
    return out


def _has(cfg: DictConfig | None, parent: str, leaf: str) -> bool:
    node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if cfg else None
    return isinstance(node, DictConfig) and leaf in node.keys()


def _composed(overrides: list[str]) -> DictConfig | None:
    from transferlab.config.compose import compose

    try:
        return compose(overrides, out_dir=".")
    except Exception:
        return None


def _sweep_choices(override: str) -> list[str] | None:
    """The values of a choice sweep (`a,b`, `choice(a,b)`) as Hydra parses `override`; None when it is no sweep,
    [] for other sweeps (range, glob, interval)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_override(override)
    except Exception:
        return None
    if not parsed.is_sweep_override():
        return None
    return [str(v) for v in parsed.sweep_string_iterator()] if parsed.is_discrete_sweep() else []


# -- the command line, before Hydra composes ------------------------------------------------------------------
_SCALARS = {"true", "false", "null", "none", "yes", "no", "on", "off"}


def _scalar(value: str) -> bool:
    """A value Hydra parses as a bool / number / null / dict rather than a config name."""
    v = value.strip()
    if v.lower() in _SCALARS - {"on", "off"} or v.startswith(("{", "[")):
        return True
    try:
        float(v)
        return True
    except ValueError:
        return False


MULTI = ("logger",)  # groups whose files each set their own key (logger.csv, logger.wandb): several may be chosen


def check_argv(argv: list[str], conf_dir=None) -> None:
    """One-line fix-its for overrides Hydra would answer with a traceback: a config group given a bool, a
    number or a dict (`cache=false`, `logger=False`, `strategy=5`), a section given a scalar (`plan=true`),
    a SLURM sweep started where there is no SLURM."""
    from pathlib import Path

    _check_launcher(argv)

    from transferlab.config.compose import CONF

    conf = Path(conf_dir or CONF)
    groups = {d.name for d in conf.iterdir() if d.is_dir() and d.name not in ("hydra", "base", "__pycache__")}
    base = OmegaConf.load(conf / "config.yaml")
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "~")):
            continue
        key, value = arg.lstrip("+").split("=", 1)
        options = sorted(p.stem for p in (conf / key).glob("*.yaml")) if key in groups else []
        if key in MULTI and value.startswith("[") and all(v.strip() in options for v in value.strip("[]").split(",")):
            continue  # `logger=[csv,wandb]`: Hydra selects several files of a group whose files are namespaced
        if key in groups and value not in options and _scalar(value):
            raise ConfigError(
                f"`{arg}`: {key} is a config group, so its value names one of its files: "
                f"{', '.join(options)} (e.g. `{key}={options[0]}`)."
            )
        section = base.get(key) if key in base else None
        if isinstance(section, DictConfig) and not value.strip().startswith("{"):
            keys = ", ".join(f"{key}.{k}" for k in section)
            close = difflib.get_close_matches("enabled", list(section), n=1) if value.lower() in _SCALARS else []
            hint = f" (e.g. `{key}.{close[0]}={value}`)" if close else ""
            raise ConfigError(f"`{arg}`: {key} is a section of settings ({keys}); set one of them{hint}.")


def _check_launcher(argv: list[str]) -> None:
    """`-m hydra/launcher=slurm` off a cluster: submitit would fail deep inside (`Could not detect "srun"`)."""
    import shutil

    multirun = any(a in ("-m", "--multirun") for a in argv)
    if multirun and "hydra/launcher=slurm" in argv and not shutil.which("sbatch"):
        raise ConfigError(
            "`hydra/launcher=slurm` submits each job with sbatch, and this machine has no `sbatch` on its PATH "
            "(not a SLURM login node). Run the same command on the cluster's login node; on this machine use "
            "`hydra/launcher=local_submitit` (the same submitit code path, local processes) or `hydra/launcher=local`."
        )
