"""Layer groups a strategy asks for against the ones the backbone has, from its architecture alone (no weights)."""

from __future__ import annotations

from transferlab.config.rules import _arch, _declared
from transferlab.errors import ConfigError


def check_groups(tree: dict) -> None:
    """More layer groups asked for (`strategy.trainable_groups` / `max_groups`) than the model has, from the
    architecture alone: a transformers config.json the planner knows, or a timm model built on the meta device."""
    strat = tree.get("strategy") or {}
    asked = {k: v for k in ("trainable_groups", "max_groups") if type(v := strat.get(k)) is int}
    if not asked:
        return
    count = _group_count(tree.get("backbone") or {})
    if count is None:
        return
    n, names = count
    for key, k in asked.items():
        if k > n:
            raise ConfigError(
                f"strategy.{key}={k} but the backbone has only {n} layer groups ({names}); use at most {n} "
                "(or strategy=full)."
            )


def _group_count(node: dict) -> tuple[int, str] | None:
    """(layer groups, their names) of backbone `node` without its weights; None when unknown here."""
    from transferlab.backbones.hf import HFBackbone, HFEncoder
    from transferlab.backbones.lenet import LeNet
    from transferlab.backbones.timm import TimmBackbone
    from transferlab.config.schema import target_class

    cls = target_class(node)
    if _declared(cls, HFBackbone):
        blocks = (_arch(node) or {}).get("num_hidden_layers") or (_arch(node) or {}).get("n_layer")
        final = "" if _declared(cls, HFEncoder) else ", final"  # an encoder's unused pooler is dropped: no final group
        return (int(blocks) + 1 + bool(final), f"embeddings, {blocks} transformer blocks{final}") if blocks else None
    if _declared(cls, TimmBackbone):
        from omegaconf import OmegaConf

        from transferlab.planning.arch import build_meta_backbone

        try:
            groups = build_meta_backbone(OmegaConf.create(node)).layer_groups()
        except Exception:  # an unknown model name etc.: the real build says what is wrong
            return None
    elif _declared(cls, LeNet):  # 26 k parameters at random init: built for real, no weights to read
        groups = LeNet().layer_groups()
    else:
        return None
    return len(groups), ", ".join(g.name for g in groups)
