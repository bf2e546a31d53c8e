"""Checks of the composed config that run before any model or data is loaded.

Every node with a `_target_` is checked against the target's signature without building it (the
idea of torchtune's `config/_validate.py`): unknown keys (with a did-you-mean), values of the wrong
type, required values left out. `trainer` and `hardware` are checked against `lightning.Trainer`.
Ranges that no constructor checks early, group combinations that can't work (declared by the classes
themselves: `Strategy.kinds`, backbone `kind`, data `modality` / `task`), and local model folders
(missing files, code that would need `trust_remote_code`) follow. All problems of one kind are
reported together, in one `ConfigError`.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transferlab.errors import ConfigError, WeightsError

_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def _nonneg(v) -> bool:
    return v >= 0


# Values consumed by code that does not check them itself (Lightning, torch, the head); (test, expected).
RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "head.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "trainer.max_epochs": (lambda v: v == -1 or v >= 0, ">= 0 (or -1: no limit)"),
    "trainer.max_steps": (lambda v: v == -1 or v >= 0, ">= 0 (or -1: no limit)"),
    "trainer.accumulate_grad_batches": (lambda v: v >= 1, ">= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.limit_train_batches": (_nonneg, ">= 0 (a fraction <= 1.0 or a batch count)"),
    "trainer.limit_val_batches": (_nonneg, ">= 0 (a fraction <= 1.0 or a batch count)"),
    "trainer.limit_test_batches": (_nonneg, ">= 0 (a fraction <= 1.0 or a batch count)"),
    "trainer.gradient_clip_val": (_nonneg, ">= 0 (or null)"),
    "optimizer.lr": (lambda v: v > 0, "> 0"),
    "optimizer.weight_decay": (_nonneg, ">= 0"),
    "data.max_bad_fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "head.bottleneck": (lambda v: isinstance(v, int) and v >= 0, "a width >= 1 (e.g. 256), or 0/null for none"),
    "da.forward": (lambda v: v in ("separate", "joint"), "'separate' or 'joint'"),
    "da.lr_mult": (lambda v: v > 0, "> 0"),
}


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
    problems: list[str] = []
    for path, node in _target_nodes(tree, ""):
        problems += check_node(path, node)
    problems += _check_trainer(tree)
    named = {p.split("=", 1)[0] for p in problems}
    problems += [p for p in _check_ranges(tree) if p.split("=", 1)[0] not in named]  # one problem per key
    if problems:
        raise ConfigError("invalid config: " + " ".join(problems))
    _check_combinations(tree)
    _check_accelerator(tree)
    _check_backbone_files(tree)


# -- targets ----------------------------------------------------------------------------------
def _target_nodes(node: Any, path: str):
    """(dotted path, dict) of every node with a `_target_`, outermost first."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for k, v in node.items():
            yield from _target_nodes(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _target_nodes(v, f"{path}[{i}]")


def _locate(target: str):
    from hydra.utils import get_object

    return get_object(target)


def signature(fn) -> tuple[dict[str, inspect.Parameter], bool, dict]:
    """(named parameters, accepts any keyword?, type hints) of a callable or a class's `__init__` chain.

    A class whose `__init__` takes `**kwargs` is followed up its MRO (`HFEncoder(pooling, **kwargs)` ->
    `HFBackbone.__init__`), as those keywords end up there; only the first signature's required
    parameters count as required.
    """
    params: dict[str, inspect.Parameter] = {}
    hints: dict = {}
    funcs = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if isinstance(fn, type) else [fn]
    open_kw = True
    for f in funcs:
        f = inspect.unwrap(f)
        try:
            sig = inspect.signature(f)
        except (TypeError, ValueError):
            return params, True, hints
        with contextlib.suppress(Exception):  # unresolvable forward references: no type checks
            hints = {**typing.get_type_hints(f), **hints}
        names = list(sig.parameters.items())[1:] if isinstance(fn, type) else list(sig.parameters.items())
        for name, p in names:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):  # a base's required ones come from the subclass
                params.setdefault(name, p if not params else p.replace(default=None))
        open_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        if not open_kw:
            break
    return params, open_kw, hints


def _unknown(full: str, key: str, params: dict, where: str) -> str:
    close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.6)
    prefix = full[: -len(key)]
    hint = f" Did you mean {prefix}{close[0]}?" if close else ""
    return f"{full} is not a parameter of {where}.{hint} Valid keys: {', '.join(sorted(params))}."


def check_node(path: str, node: dict) -> list[str]:
    """Problems of one `_target_` node: unknown keys, wrong types, required values left out."""
    target = node["_target_"]
    try:
        fn = _locate(target)
    except Exception as e:  # any import failure is reported as the config's problem
        return [f"{path}._target_='{target}' can't be imported ({type(e).__name__}: {e})."]
    params, open_kw, hints = signature(fn)
    problems = []
    for key, value in node.items():
        if key in _HYDRA_KEYS:
            continue
        full = f"{path}.{key}" if path else key
        if key not in params:
            if not open_kw:
                problems.append(_unknown(full, key, params, target))
            continue
        if isinstance(value, dict) and "_target_" in value:
            continue  # an object built by its own node
        if key in hints and not fits(value, hints[key]):
            problems.append(
                f"{full}={value!r} should be {type_name(hints[key])} ({target} takes "
                f"`{key}: {type_name(hints[key])}`).{_did_you_mean_choice(value, hints[key])}"
            )
    if not node.get("_partial_") and "_args_" not in node:
        for name, p in params.items():
            if p.default is p.empty and name not in node:
                problems.append(f"{path}.{name} is required by {target} but not set.")
    return problems


def _did_you_mean_choice(value: Any, tp: Any) -> str:
    """ " Did you mean 'frozen'?" for a misspelt string where a `Literal[...]` of strings is expected."""
    import difflib

    choices = [a for a in typing.get_args(tp) if isinstance(a, str)] if typing.get_origin(tp) is Literal else []
    close = difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
    return f" Did you mean '{close[0]}'?" if close else ""


def fits(value: Any, tp: Any) -> bool:
    """Whether a plain config value can be passed where `tp` is annotated (lenient for non-plain types)."""
    origin = typing.get_origin(tp)
    if tp is Any or isinstance(tp, (str, typing.TypeVar)):
        return True
    if origin in (Union, types.UnionType):
        return any(fits(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp in (list, tuple) or origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    return value is not None  # a class, callable, path ...: not checked beyond "given"


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check_trainer(tree: dict) -> list[str]:
    """`trainer.*` and `hardware.*` become `lightning.Trainer` keywords."""
    import lightning as L

    params, _, hints = signature(L.Trainer)
    problems = []
    for group in ("trainer", "hardware"):
        for key, value in (tree.get(group) or {}).items():
            full = f"{group}.{key}"
            if key not in params:
                problems.append(_unknown(full, key, params, "lightning.Trainer"))
            elif not (isinstance(value, dict) and "_target_" in value) and key in hints and not fits(value, hints[key]):
                problems.append(f"{full}={value!r} should be {type_name(hints[key])}.")
    return problems


def _check_ranges(tree: dict) -> list[str]:
    problems = []
    for key, (ok, expected) in RANGES.items():
        value = tree
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        try:
            good = not isinstance(value, bool) and ok(value)
        except TypeError:  # a string where a number belongs (type checks name the key too)
            good = False
        if not good:
            problems.append(f"{key}={value!r} must be {expected}.")
    return problems


# -- group combinations -------------------------------------------------------------------------
def _cls(node) -> type | None:
    if not isinstance(node, dict) or "_target_" not in node:
        return None
    obj = _locate(node["_target_"])
    return obj if isinstance(obj, type) else None


def _choice(group: str) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get(group))
    except ValueError:
        return "(set)"


def _check_combinations(tree: dict) -> None:
    """What each group's class declares it needs: backbone kind, data modality and task."""
    backbone, strategy, data = (_cls(tree.get(k)) for k in ("backbone", "strategy", "data"))
    kind = getattr(backbone, "kind", None)  # class attribute: "image" | "text" | "causal_lm"
    name = (tree.get("backbone") or {}).get("name") or _choice("backbone")
    kinds = getattr(strategy, "kinds", None)
    if kind and kinds and kind not in kinds:
        raise ConfigError(
            f"strategy={_choice('strategy')} can't adapt a{'n' * (kind[0] in 'aeiou')} {kind} "
            f"backbone ('{name}'); it works with "
            f"{', '.join(kinds)} backbones. Pick another strategy (e.g. strategy=partial) or backbone."
        )
    modality = getattr(data, "modality", "image") if data else None
    if kind and modality and {"causal_lm": "text"}.get(kind, kind) != modality:
        raise ConfigError(
            f"backbone '{name}' takes {'text' if kind == 'causal_lm' else kind} inputs but "
            f"data={_choice('data')} is {modality} data: pick a matching pair (e.g. backbone=minilm data=reviews)."
        )
    if getattr(data, "task", None) == "instruction":
        if tree.get("adaptation"):
            raise ConfigError("data=instructions (instruction tuning) takes no adaptation; use adaptation=none.")
        if strategy is not None and not getattr(strategy, "trains", True):
            raise ConfigError(
                f"strategy={_choice('strategy')} classifies; it has nothing to do on instruction data: "
                "evaluate the untrained model with trainer.max_epochs=0 instead."
            )


def _check_accelerator(tree: dict) -> None:
    accelerator = str((tree.get("hardware") or {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"hardware={_choice('hardware')} needs a CUDA GPU, but none is visible here "
                "(torch.cuda.is_available() is False). Use hardware=cpu (or hardware=ddp_cpu)."
            )


def check_data(strategy, data) -> None:
    """Checks that need the data's classes (after the cheap `data.prepare()`, before any weights)."""
    labels = getattr(strategy, "labels", None)
    if labels and getattr(data, "task", None) != "instruction" and len(labels) != data.num_classes:
        raise ConfigError(
            f"strategy.labels has {len(labels)} names but the data has {data.num_classes} classes "
            f"({data.classes}); give one name per class, in class order, or null for the data's names."
        )


# -- local model files ---------------------------------------------------------------------------
def _check_backbone_files(tree: dict) -> None:
    node = tree.get("backbone") or {}
    cls = _cls(node)
    weights = node.get("weights")
    if isinstance(weights, str) and node.get("pretrained", True) and not Path(weights).expanduser().is_file():
        raise WeightsError(f"weights file not found: '{weights}'. Point `backbone.weights` at an existing file.")
    from transferlab.backbones.hf import HFBackbone

    path = node.get("path")
    if cls is not None and issubclass(cls, HFBackbone) and isinstance(path, str):
        check_model_folder(Path(path).expanduser(), bool(node.get("trust_remote_code", False)))


def check_model_folder(path: Path, trust_remote_code: bool = False) -> None:
    """A transformers model folder (`save_pretrained` layout): name the first missing file."""
    fix = (
        "Point backbone.path at a folder saved with `save_pretrained` "
        "(config.json + model.safetensors + tokenizer files)."
    )
    if not path.is_dir():
        raise WeightsError(f"backbone.path='{path}' does not exist or is not a folder. {fix}")
    if not (path / "config.json").is_file():
        raise WeightsError(f"backbone.path='{path}' is not a transformers model folder (no config.json). {fix}")
    weights = [f for f in _WEIGHT_FILES if (path / f).is_file()]
    if not weights:
        raise WeightsError(
            f"backbone.path='{path}' has no weights file: expected model.safetensors (or "
            f"pytorch_model.bin, or a sharded *.index.json with its shards). {fix}"
        )
    if weights[0].endswith(".index.json"):
        shards = sorted(set(json.loads((path / weights[0]).read_text()).get("weight_map", {}).values()))
        lost = [s for s in shards if not (path / s).is_file()]
        if lost:
            raise WeightsError(
                f"backbone.path='{path}': {weights[0]} lists {len(shards)} shard(s) but {lost[0]} is missing"
                f"{f' (and {len(lost) - 1} more)' if len(lost) > 1 else ''}; copy the complete folder."
            )
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise WeightsError(
            f"backbone.path='{path}' has no tokenizer files (tokenizer.json, vocab.txt or "
            "tokenizer.model); save the tokenizer into the folder too (`tokenizer.save_pretrained`)."
        )
    if (
        (path / "vocab.json").is_file()
        and not (path / "tokenizer.json").is_file()
        and not (path / "merges.txt").is_file()
    ):
        raise WeightsError(f"backbone.path='{path}' has vocab.json but no merges.txt (a BPE tokenizer needs both).")
    auto_map = json.loads((path / "config.json").read_text()).get("auto_map")
    if auto_map and not trust_remote_code:
        raise ConfigError(
            f"backbone.path='{path}' needs custom model code (config.json auto_map: "
            f"{sorted(auto_map)}), which transformers "
            "would execute. transferlab runs no code from model folders unless you set "
            "backbone.trust_remote_code=true; "
            "do that only if you trust the code in that folder."
        )


# -- Hydra's own composition errors ------------------------------------------------------------------
def override_hints(argv: list[str]) -> list[str]:
    """Did-you-mean lines for `key=value` overrides naming keys the composed config lacks.

    Used after Hydra refused an override (`Key 'train_per_clas' is not in struct`), which lists no
    suggestion: the config is composed again with the group choices of `argv` only.
    """
    from transferlab.compose import compose

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
