"""Hydra's basic sweeper, validating a grid before launch by composing one job per distinct config tree.

Hydra's `BasicSweeper` composes every job of a batch in the launching process before it starts any
(`validate_batch_is_legal`), and each job composes its config again where it runs. A composition costs
~0.1 s with transferlab's defaults tree, so the 36-job size study waited 3.75 s before its first worker
started, and both workers waited with it (BENCHMARKS.md P6); a 500-job grid would wait a minute.

What can fail while composing depends on the defaults tree (which group options, hence which keys
exist) and on the *kind* of each override, not on a plain value's choice: `seed=0` and `seed=1` compose
or fail together. So the jobs are grouped by their config-group choices, any `hydra...` override and
the key, package and kind of every other override, and one job per group is composed: every group
option and every key a job sets is still checked, before anything runs. A dict or list value can add
keys, so it counts as its own group. The size study composes 4 jobs (one per strategy) instead of 36.
transferlab's configs are YAML (untyped); in a typed (dataclass) config a value of the wrong type fails
when its own job composes, not before launch.
"""

# no `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules, where dataclass
# string annotations fail

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class TransferlabSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.transferlab_sweeper.transferlab_sweeper.TransferlabSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="transferlab", node=TransferlabSweeperConf, provider="transferlab"
)


def composition_key(overrides, is_group) -> tuple:
    """What decides whether a job's overrides compose: equal keys compose or fail together.

    Args:
        overrides: the job's parsed overrides (hydra `Override`s).
        is_group: `key_or_group -> bool`, whether it names a config group.
    """
    key = []
    for o in overrides:
        if o.is_hydra_override() or is_group(o.key_or_group) or isinstance(o.value(), (dict, list)):
            key.append(o.input_line)
        else:  # a plain value: only the key, where it goes and how (=, +, ++, ~) matter
            key.append((o.key_or_group, o.package, o.type.name))
    return tuple(key)


def representatives(batch: Sequence[Sequence[str]], config_loader) -> list[list[str]]:
    """One job per distinct `composition_key`, in batch order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    repo = getattr(config_loader, "repository", None)
    groups: dict[str, bool] = {}

    def is_group(name: str) -> bool:
        if name not in groups:
            groups[name] = repo is None or repo.group_exists(name)  # no repository to ask: treat as a group
        return groups[name]

    seen, out = set(), []
    for job in batch:
        k = composition_key(parser.parse_overrides(list(job)), is_group)
        if k not in seen:
            seen.add(k)
            out.append(list(job))
    return out


class TransferlabSweeper(BasicSweeper):
    """`BasicSweeper` (same `params`, `max_batch_size`, job order), validating one job per composition key
    (as strict for untyped YAML configs; see the module docstring for typed ones)."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None
        super().validate_batch_is_legal(representatives(batch, self.hydra_context.config_loader))
