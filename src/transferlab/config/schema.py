"""Schema checks of the composed config: every `_target_` node against its target's signature.

Run before anything is built (the idea of torchtune's `config/_validate.py`): unknown keys (with a
did-you-mean), values of the wrong type, required values left out; `trainer` and `hardware` against
`lightning.Trainer`; and ranges that no constructor checks early (`RANGES`). Returns problems as
strings; `transferlab.config.validate` reports them together in one `ConfigError`.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import types
import typing
from typing import Any, Literal, Union

from transferlab.config.modality import DECLARED
from transferlab.config.ranges import BOOL_VALUED, RANGES

_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


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
        if key in _HYDRA_KEYS or key in DECLARED:  # declarations (config.modality), not constructor arguments
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
    trainer = tree.get("trainer") or {}
    unbounded = trainer.get("max_steps", -1) == -1 and not trainer.get("max_time")
    if unbounded and trainer.get("max_epochs") in (-1, None):
        meaning = (
            "never ends (Lightning trains forever)"
            if trainer.get("max_epochs") == -1
            else ("means Lightning's default of 1000 epochs")
        )
        problems.append(
            f"trainer.max_epochs={trainer.get('max_epochs')} with trainer.max_steps=-1 {meaning}: bound the run "
            "with a number for trainer.max_epochs or trainer.max_steps, or +trainer.max_time=DD:HH:MM:SS."
        )
    return problems


def _check_ranges(tree: dict, numbers_only: bool = False) -> list[str]:
    problems = []
    for key, (ok, expected) in RANGES.items():
        value = tree
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or (numbers_only and (isinstance(value, bool) or not isinstance(value, (int, float)))):
            continue
        try:
            good = (key in BOOL_VALUED or not isinstance(value, bool)) and ok(value)
        except TypeError:  # a string where a number belongs (type checks name the key too)
            good = False
        if not good:
            problems.append(f"{key}={value!r} must be {expected}.")
    return problems


# Slots that hold something to build (a mapping with `_target_`) or nothing (null), never a scalar.
BUILT = ("optimizer", "scheduler", "augment", "tta", "translate", "adaptation", "data.source", "data.target",
         "backbone.weights", "backbone.path")  # fmt: skip
SECTIONS = ("callbacks", "logger")  # each of their entries is built (or null)
FLAGS = ("plan.enabled", "diagnostics.enabled", "cache.features", "overwrite")
PATHS = ("cache.dir", "ckpt_path", "data.root", "data.target_root", "translate.cache_dir")  # a path or null


def _at(tree: dict, key: str):
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _check_shapes(tree: dict) -> list[str]:
    """Scalars where something is built, and on/off flags given something else."""
    found = []
    slots = [(k, _at(tree, k)) for k in BUILT]
    slots += [(f"{s}.{k}", v) for s in SECTIONS for k, v in (tree.get(s) or {}).items()]
    for key, value in slots:
        if key in ("backbone.path", "backbone.weights") and isinstance(value, str):
            continue  # a local model folder / weights file
        if value is not None and not (isinstance(value, dict) and (not value or "_target_" in value)):
            found.append(f"{key}={value!r} should be a config with a `_target_` (or null).")
    for path, node in _target_nodes(tree, ""):
        for flag in ("_partial_", "_recursive_"):
            if flag in node and not isinstance(node[flag], bool):
                found.append(f"{path}.{flag}={node[flag]!r} should be true or false.")
    for key in PATHS:
        value = _at(tree, key)
        if value is not None and not isinstance(value, str):
            found.append(f"{key}={value!r} should be a path (or null).")
    for key in FLAGS:
        parent, _, leaf = key.rpartition(".")
        node = _at(tree, parent) if parent else tree
        if isinstance(node, dict) and leaf in node and not isinstance(node[leaf], bool):
            found.append(f"{key}={node[leaf]!r} should be true or false.")
    return found


def static_problems(tree: dict) -> list[str]:
    """The problems found without importing any target: shapes, and numbers out of their range.

    A non-number where a number belongs is left to `problems`, whose type check names the expected type.
    """
    return _check_shapes(tree) + _check_ranges(tree, numbers_only=True)


def problems(tree: dict) -> list[str]:
    """Every schema problem of the resolved config tree (one per key), as messages."""
    found: list[str] = _check_shapes(tree)
    for path, node in _target_nodes(tree, ""):
        found += check_node(path, node)
    found += _check_trainer(tree)
    named = {p.split("=", 1)[0] for p in found}
    return found + [p for p in _check_ranges(tree) if p.split("=", 1)[0] not in named]


def target_class(node: Any) -> type | None:
    """The class a config node's `_target_` names (None: no target, or a function)."""
    if not isinstance(node, dict) or "_target_" not in node:
        return None
    obj = _locate(node["_target_"])
    return obj if isinstance(obj, type) else None
