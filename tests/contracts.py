"""The config contracts' test cases, derived from the config folders: no hand-written lists of choices.

Every helper takes the config dir (`CONF`, the package's `transferlab/conf`, or a copy of it in a test), so a YAML
added to a group folder is collected by the tests that parametrize from here. What a test needs to know about a
choice comes from its YAML (`_target_`, its `defaults`, `???` values, `accelerator`) and from what its `_target_`
class declares, the attributes the config checks and the run read:

    backbone   `kind` ("image" | "text" | "causal_lm"; a builder function declaring none: `BackboneInfo`'s default);
               `has_lm_head`: a language-modelling head (a causal LM), what instruction tuning needs
    strategy   `Strategy.kinds` (backbone kinds it adapts), `Strategy.trains` (False: zero-shot)
    data       `modality` ("image" | "text"), `lm_task` (instruction tuning), `has_target_domain` (set per
               instance from `target` / `target_root`: read from the built, not yet loaded, data module)
    adaptation `needs_target` (trains a loss on target batches); the adversarial ones carry a `grl` and a
               `discriminator`
"""

from __future__ import annotations

import copy
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import compose  # the project's composer (where it lives moves with the package)
from omegaconf import OmegaConf

HYDRA = "hydra"  # Hydra's own config groups (hydra/launcher, hydra/job_logging) live here: not a run's choices
BASE = "base"  # shared bases that group YAMLs pull in (`- /base/hf_encoder@_here_`): not a run's choices
PRIMARY = "config.yaml"
INPUTS = {"causal_lm": "text"}  # the data modality a backbone kind reads, where the two names differ
COMBINED = ("backbone", "strategy", "data")  # the groups whose classes declare what they combine with
DOMAIN_PAIR = ("adaptation", "translate")  # any choice with a `_target_` here needs a target domain (config.rules)


# -- what the folders hold ---------------------------------------------------------------------------------
def groups(conf_dir: Path | str) -> list[str]:
    """Config groups: the folders of `conf_dir` holding YAML files (Hydra's own `hydra/` aside)."""
    conf = Path(conf_dir)
    return sorted(
        d.name for d in conf.iterdir() if d.is_dir() and d.name not in (HYDRA, BASE) and any(d.glob("*.yaml"))
    )


def choices(conf_dir: Path | str, group: str) -> list[str]:
    """The options of one group: its `*.yaml` file names."""
    return sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))


def files(conf_dir: Path | str, only: list[str] | tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(group, choice) for every YAML of every group (or of the groups in `only`)."""
    return [(g, n) for g in (only or groups(conf_dir)) for n in choices(conf_dir, g)]


def defaults(conf_dir: Path | str) -> dict[str, str | None]:
    """The primary config's default choice per group (`optional experiment: null` -> None; overrides of Hydra's
    own groups left out)."""
    out: dict[str, str | None] = {}
    for entry in OmegaConf.to_container(OmegaConf.load(Path(conf_dir) / PRIMARY)).get("defaults", []):
        if isinstance(entry, dict):
            ((key, value),) = entry.items()
            words = key.split()
            if words[0] != "override":
                out[words[-1]] = value
    return out


def optional(conf_dir: Path | str) -> list[str]:
    """Groups the primary config lists as `optional` (Hydra composes without a missing choice of these)."""
    entries = OmegaConf.to_container(OmegaConf.load(Path(conf_dir) / PRIMARY)).get("defaults", [])
    return sorted(k.split()[-1] for e in entries if isinstance(e, dict) for k in e if k.split()[0] == "optional")


@functools.cache
def _option(conf: str, group: str, name: str) -> dict:
    own = OmegaConf.to_container(OmegaConf.load(Path(conf) / group / f"{name}.yaml")) or {}
    entries = own.pop("defaults", [])
    if "_self_" not in entries:
        entries = [*entries, "_self_"]  # Hydra >= 1.1: a config's own keys come last unless placed
    merged = OmegaConf.create({})
    for entry in entries:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, own)
        elif isinstance(entry, str) and entry.startswith("/"):  # a shared base: `- /base/hf_encoder@_here_`
            other, name = entry.lstrip("/").split("@")[0].split("/")
            merged = OmegaConf.merge(merged, _option(conf, other, name))
        elif isinstance(entry, str):  # another option of the same group (`- timm`, `- cdan`)
            merged = OmegaConf.merge(merged, _option(conf, group, entry))
        # {override /group: choice} entries (experiments) choose other groups: see `selects`
    return OmegaConf.to_container(merged)


def option(conf_dir: Path | str, group: str, name: str) -> dict:
    """One YAML as Hydra merges it into its group's node: its own keys over those of the same-group options in
    its `defaults` (interpolations and `???` kept as written)."""
    return copy.deepcopy(_option(str(Path(conf_dir).resolve()), group, name))


def selects(conf_dir: Path | str, group: str, name: str) -> dict[str, str]:
    """The other groups' choices a YAML's defaults list sets (`- override /data: reviews` -> {"data": "reviews"})."""
    raw = OmegaConf.to_container(OmegaConf.load(Path(conf_dir) / group / f"{name}.yaml")) or {}
    out = {}
    for entry in raw.get("defaults", []):
        if isinstance(entry, dict):
            ((key, value),) = entry.items()
            out[key.split()[-1].lstrip("/")] = value
    return out


def target(node: Any) -> Any | None:
    """The class (or function) a node's `_target_` names; None for a node without one (`none.yaml`)."""
    if not isinstance(node, dict) or "_target_" not in node:
        return None
    from hydra.utils import get_object

    return get_object(node["_target_"])


def target_of(conf_dir: Path | str, group: str, name: str) -> Any | None:
    return target(option(conf_dir, group, name))


# -- declared properties -------------------------------------------------------------------------------------
def backbone_kind(conf_dir: Path | str, name: str) -> str:
    """What a backbone takes: its class's `kind`; a `_target_` that declares none (a builder function, e.g. TF Hub's)
    records `BackboneInfo`'s default kind."""
    from transferlab.backbones.base import BackboneInfo

    return (
        getattr(target_of(conf_dir, "backbone", name), "kind", None)
        or BackboneInfo.__dataclass_fields__["kind"].default
    )


def backbone_input(conf_dir: Path | str, name: str) -> str:
    """The data modality a backbone reads."""
    kind = backbone_kind(conf_dir, name)
    return INPUTS.get(kind, kind)


def has_lm(conf_dir: Path | str, name: str) -> bool:
    """A backbone declaring a language-modelling head (`Backbone.has_lm_head`: a causal LM; a builder function
    declaring nothing has none)."""
    return bool(getattr(target_of(conf_dir, "backbone", name), "has_lm_head", False))


@dataclass(frozen=True)
class DataTraits:
    modality: str
    lm_task: bool
    has_target_domain: bool


@functools.cache
def _data_traits(conf: str, name: str) -> DataTraits:
    from transferlab.config.instantiate import build as instantiate  # drops the declared keys (config.modality)

    cfg = compose([f"data={name}"], "unused", conf_dir=conf)
    cfg = compose([f"data={name}", *fill_missing(conf, cfg, Path("unused"))], "unused", conf_dir=conf)
    data = instantiate(cfg.data)  # builds the data module only: nothing is loaded before prepare()
    return DataTraits(data.modality, data.lm_task, bool(data.has_target_domain))


def data_traits(conf_dir: Path | str, name: str) -> DataTraits:
    return _data_traits(str(Path(conf_dir).resolve()), name)


def trains_on_target(conf_dir: Path | str) -> list[str]:
    """Adaptation choices whose class trains a loss on target batches (`needs_target`)."""
    names = choices(conf_dir, "adaptation")
    return [n for n in names if getattr(target_of(conf_dir, "adaptation", n), "needs_target", False)]


def build_adaptation(conf_dir: Path | str, name: str, num_features: int, num_classes: int, **overrides):
    """An adaptation module built from its YAML (a partial sized at run time), with `overrides` on top."""
    from hydra.utils import instantiate

    node = OmegaConf.merge(option(conf_dir, "adaptation", name), overrides)
    return instantiate(node)(num_features, num_classes)


def is_adversarial(method) -> bool:
    """A domain discriminator trained through a gradient-reversal layer."""
    from transferlab.adaptation.grl import GradientReversal

    return isinstance(getattr(method, "grl", None), GradientReversal) and hasattr(method, "discriminator")


def adversarial(conf_dir: Path | str) -> list[str]:
    """Adaptation choices that build an adversarial method (built small from the YAML to ask it)."""
    return [n for n in trains_on_target(conf_dir) if is_adversarial(build_adaptation(conf_dir, n, 8, 2))]


def needs_gpu(conf_dir: Path | str, name: str) -> bool:
    """A hardware choice that asks for a CUDA accelerator."""
    return str(option(conf_dir, "hardware", name).get("accelerator")) in ("gpu", "cuda")


# -- combinations that can run ------------------------------------------------------------------------------
def conflicts(conf_dir: Path | str, chosen: dict[str, str | None]) -> list[str]:
    """What the classes of `chosen` (group -> choice) declare they can't combine with."""
    kind = backbone_kind(conf_dir, chosen["backbone"])
    strategy = target_of(conf_dir, "strategy", chosen["strategy"])
    data = data_traits(conf_dir, chosen["data"])
    found = []
    if kind not in strategy.kinds:
        found.append(f"strategy {chosen['strategy']} adapts {strategy.kinds}, not {kind}")
    if backbone_input(conf_dir, chosen["backbone"]) != data.modality:
        found.append(f"backbone {chosen['backbone']} reads {backbone_input(conf_dir, chosen['backbone'])}")
    pair = [g for g in DOMAIN_PAIR if chosen.get(g) and target_of(conf_dir, g, chosen[g]) is not None]
    if pair and not data.has_target_domain:
        found.append(f"{pair} need a target domain")
    if data.lm_task and (pair or not strategy.trains):
        found.append("instruction tuning takes no adaptation and a strategy that trains")
    if data.lm_task and not has_lm(conf_dir, chosen["backbone"]):
        found.append(f"instruction tuning calls backbone.lm(), which {chosen['backbone']} lacks")
    return found


def _traits(conf_dir: Path | str, group: str, name: str) -> tuple:
    if group == "backbone":
        return (backbone_kind(conf_dir, name), has_lm(conf_dir, name))
    if group == "strategy":
        cls = target_of(conf_dir, group, name)
        return (tuple(cls.kinds), cls.trains)
    t = data_traits(conf_dir, name)
    return (t.modality, t.lm_task, t.has_target_domain)


def _ranked(conf_dir: Path | str, group: str, current: str) -> list[str]:
    """`current` first, then the group's other choices by how many declared traits differ from it, then name."""
    mine = _traits(conf_dir, group, current)

    def distance(n: str) -> int:
        return sum(a != b for a, b in zip(_traits(conf_dir, group, n), mine, strict=True))

    others = sorted((n for n in choices(conf_dir, group) if n != current), key=lambda n: (distance(n), n))
    return [current, *others]


def partners(conf_dir: Path | str, overrides: list[str], out_dir: Path) -> list[str]:
    """Overrides of the other groups that make `overrides` a combination its classes accept (none when it already
    is), then values for what is still `???`. Changes as few groups as it can, to their nearest choices; never a
    group that `overrides` (or an experiment it chooses) sets."""
    from hydra.core.hydra_config import HydraConfig

    compose(overrides, out_dir, conf_dir=conf_dir)
    chosen = dict(HydraConfig.get().runtime.choices)
    fixed = {o.split("=", 1)[0].lstrip("+") for o in overrides if "=" in o}
    if chosen.get("experiment"):
        fixed |= set(selects(conf_dir, "experiment", chosen["experiment"]))
    free = [g for g in COMBINED if g not in fixed]
    options = [_ranked(conf_dir, g, chosen[g]) for g in free]
    combos = itertools.product(*[list(enumerate(o)) for o in options])
    for combo in sorted(combos, key=lambda c: (sum(i > 0 for i, _ in c), sum(i for i, _ in c))):
        pick = {g: n for g, (_, n) in zip(free, combo, strict=True)}
        if not conflicts(conf_dir, {**chosen, **pick}):
            extra = [f"{g}={n}" for g, n in pick.items() if n != chosen[g]]
            cfg = compose([*overrides, *extra], out_dir, conf_dir=conf_dir)
            return extra + fill_missing(conf_dir, cfg, out_dir)
    raise AssertionError(f"no choice of {free} makes {overrides} a combination its classes accept")


def fill_missing(conf_dir: Path | str, cfg, out_dir: Path) -> list[str]:
    """Overrides for the `???` values of a composed config: the value a sibling option of the same group sets for
    that key (`backbone.model_name` from a backbone that defaults to `timm`), else a path under `out_dir` (every
    required value shipped today is a name or a path)."""
    found = []
    for key in sorted(OmegaConf.missing_keys(cfg)):
        group, rest = key.split(".", 1)
        value = None
        for sibling in choices(conf_dir, group) if group in groups(conf_dir) else []:
            v = OmegaConf.select(OmegaConf.create(option(conf_dir, group, sibling)), rest, default=None)
            if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v) != "???" and "${" not in str(v):
                value = v
                break
        found.append(f"{key}={value if value is not None else Path(out_dir) / key}")
    return found


def is_subset(part: Any, whole: Any, where: str = "") -> list[str]:
    """Where `part` (a YAML's keys) differs from `whole` (the composed node); [] when every key/value is there."""
    if isinstance(part, dict):
        if not isinstance(whole, dict):
            return [f"{where or '.'}: {whole!r} is not a mapping"]
        return [d for k, v in part.items() for d in is_subset(v, whole.get(k, KeyError), f"{where}.{k}".lstrip("."))]
    return [] if part == whole else [f"{where}: YAML {part!r}, composed {whole!r}"]
