"""`backbone_dropout`: which parts of a partly frozen backbone run in training mode (transferlab.model.dropout).

The rule before 2026-12-07 (`frozen_subtrees`) switched dropout by how a model nests it; `after_trainable`
(the default) puts the frozen prefix in eval mode and everything the forward runs after the first trainable
parameter in training mode, whatever the nesting. Checked on toy nets and on the packaged MiniLM.
"""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import compose
from torch import nn

from transferlab.model.dropout import POLICIES, DropoutPolicy, build_policy, check_policy, trace_order


def _frozen(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _modes(net: nn.Module, policy: str) -> list[bool]:
    """Training flags of `net`'s dropout layers after `.train()` under `policy`."""
    pol = DropoutPolicy(policy, trace_order(net, torch.randn(2, 3)), True)
    net.train()
    pol.apply(net)
    return [m.training for m in net.modules() if isinstance(m, nn.Dropout)]


def _nets() -> tuple[nn.Module, nn.Module]:
    """The same computation, frozen -> dropout -> trainable -> frozen -> dropout, nested two ways."""
    torch.manual_seed(0)
    flat = nn.Sequential(
        _frozen(nn.Linear(3, 3)), nn.Dropout(0.5), nn.Linear(3, 3), _frozen(nn.Linear(3, 3)), nn.Dropout(0.5)
    )
    nested = nn.Sequential(
        nn.Sequential(_frozen(nn.Linear(3, 3)), nn.Dropout(0.5)),
        nn.Linear(3, 3),
        nn.Sequential(_frozen(nn.Linear(3, 3)), nn.Dropout(0.5)),
    )
    return flat, nested


def test_after_trainable_does_not_depend_on_nesting():
    flat, nested = _nets()
    # the old rule: eval wherever a sub-module trains nothing, so the nesting decides
    assert _modes(flat, "frozen_subtrees") == [True, True]
    assert _modes(nested, "frozen_subtrees") == [False, False]
    # the rule now: the dropout before the first trainable layer is off, the one after it on, either way
    assert _modes(flat, "after_trainable") == [False, True]
    assert _modes(nested, "after_trainable") == [False, True]
    assert _modes(nested, "all") == [True, True]


def test_frozen_batch_norm_keeps_its_statistics_under_every_policy():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), _frozen(nn.BatchNorm1d(4)), nn.Dropout(0.5))
    for policy in POLICIES:
        net.train()
        DropoutPolicy(policy, trace_order(net, torch.randn(2, 3)), True).apply(net)
        assert not net[1].training, policy
        assert net[2].training, policy  # after the trainable Linear


def test_batch_norm_without_affine_parameters_is_not_frozen():
    """BN(affine=False) has no parameters to freeze: after a trainable layer it normalises with batch statistics
    (under strategy.norm=train) as under the old rule, instead of counting as a frozen layer."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.Dropout(0.5))
    for policy in POLICIES:
        net.train()
        DropoutPolicy(policy, trace_order(net, torch.randn(2, 3)), True).apply(net)
        assert net[1].training, policy


def test_a_module_called_before_and_after_the_first_trainable_layer_trains():
    """A dropout the forward uses twice (T5's stack applies one module to the embeddings and to the output) is
    judged by its latest call: it runs after the trainable block, so it is in training mode."""
    from transferlab.model.dropout import trace_calls

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.dropout, self.block = _frozen(nn.Linear(3, 3)), nn.Dropout(0.5), nn.Linear(3, 3)

        def forward(self, x):
            return self.dropout(self.block(self.dropout(self.embed(x))))

    net = Net()
    first, latest = trace_calls(net, torch.randn(2, 3))
    assert first["dropout"] < first["block"] < latest["dropout"]
    net.train()
    DropoutPolicy("after_trainable", first, True, latest).apply(net)
    assert net.dropout.training and not net.embed.training


def test_unknown_policy_names_the_choices():
    with pytest.raises(Exception, match="after_trainable, all, frozen_subtrees"):
        check_policy("some")


def test_untraceable_backbone_falls_back_to_registration_order(caplog):
    class Data:  # an example batch the backbone can't take
        datasets = {"source/train": [{"inputs": torch.zeros(5), "labels": 0}] * 2}
        collate_fn = None

    net = nn.Sequential(_frozen(nn.Linear(3, 3)), nn.Dropout(0.5), nn.Linear(3, 3))
    with caplog.at_level(logging.WARNING, logger="transferlab"):
        pol = build_policy("after_trainable", net, Data())
    assert not pol.traced and "registration order" in caplog.text
    net.train()
    pol.apply(net)
    assert [net[1].training, net[2].training] == [False, True]


# -- MiniLM: the same rule for every strategy ------------------------------------------------------------
MINILM = ["backbone=minilm", "data=reviews", "logger=none", "callbacks.checkpoint=null"]
# strategy -> (dropout layers in training mode, layers) on all-MiniLM-L6-v2 (19 in the encoder; LoRA adds 12)
AFTER_TRAINABLE = {
    "full": (19, 19),
    "lora": (30, 31),  # all but the embeddings' dropout, before the first adapted query
    "prompt_tuning": (19, 19),  # the soft prompt enters before the embeddings' dropout
    "partial": (12, 19),  # the four unfrozen layers (strategy.trainable_groups=4)
    "feature_extraction": (0, 19),
}
BEFORE = {"lora": (18, 31), "prompt_tuning": (0, 19)}  # frozen_subtrees: the nesting-dependent rule


def _built(tmp_path, strategy: str, policy: str):
    from transferlab.run.build import build_model

    return build_model(compose([*MINILM, f"strategy={strategy}", f"backbone_dropout={policy}"], tmp_path))


@pytest.mark.parametrize("strategy", sorted(AFTER_TRAINABLE))
def test_minilm_dropout_after_the_first_trainable_parameter(strategy, tmp_path):
    b = _built(tmp_path, strategy, "after_trainable")
    section = b.sections["dropout"]
    assert (section["active"], section["layers"]) == AFTER_TRAINABLE[strategy]
    assert section["policy"] == "after_trainable" and section["order"] == "traced"
    b.module.train()
    attention = [m for n, m in b.module.backbone.named_modules() if n.endswith("attention.self")]
    # SDPA attention reads its own `training` flag for attention dropout: on in every layer the forward runs
    # after a trainable parameter (all six, but under partial and feature extraction)
    assert sum(m.training for m in attention) == {"partial": 4, "feature_extraction": 0}.get(strategy, 6)
    if strategy == "lora":  # the adapter's own dropout (strategy.dropout) is on in every layer, the first too
        lora = [m for n, m in b.module.backbone.named_modules() if n.endswith("lora_dropout.default")]
        assert len(lora) == 12 and all(m.training for m in lora)


@pytest.mark.parametrize("strategy", sorted(BEFORE))
def test_minilm_frozen_subtrees_reproduces_the_old_rule(strategy, tmp_path):
    section = _built(tmp_path, strategy, "frozen_subtrees").sections["dropout"]
    assert (section["active"], section["layers"]) == BEFORE[strategy] and section["order"] is None


def test_prompt_tuning_trains_with_dropout_on(tmp_path):
    """The behaviour, not the flags: two training-mode forwards of one batch differ (dropout draws), and
    don't under the old rule, where the frozen encoder ran in eval mode."""
    from transferlab.model.dropout import example_batch

    for policy, differs in (("after_trainable", True), ("frozen_subtrees", False)):
        b = _built(tmp_path / policy, "prompt_tuning", policy)
        x = example_batch(b.data, torch.device("cpu"))["inputs"]
        b.module.train()
        with torch.no_grad():
            y1, y2 = b.module.features(x), b.module.features(x)
        assert (not torch.equal(y1, y2)) == differs, policy


def test_all_declines_the_feature_cache(tmp_path):
    from transferlab.model.features import why_not
    from transferlab.run.build import build_model

    for policy, declined in (("all", True), ("after_trainable", False)):
        b = build_model(compose(["strategy=feature_extraction", f"backbone_dropout={policy}"], tmp_path / policy))
        reason = why_not(b.strategy, b.module, b.data)
        assert ("backbone_dropout=all" in reason) == declined, reason
        assert b.sections["dropout"]["policy"] == policy


def test_instruction_tuning_traces_the_lm_forward(tmp_path):
    """The causal-LM path (SmolLM2, LoRA) follows the same rule: before, every module trained in training mode."""
    from transferlab.run.build import build_model

    b = build_model(compose(["backbone=smollm2", "data=instructions", "strategy=lora"], tmp_path))
    assert b.sections["dropout"]["policy"] == "after_trainable" and b.sections["dropout"]["order"] == "traced"
    b.module.train()
    named = dict(b.module.backbone.named_modules())
    embed = [m for n, m in named.items() if n.endswith("embed_tokens")]
    layers = [m for n, m in named.items() if n.endswith("layers.0")]
    assert embed and not any(m.training for m in embed)  # the frozen prefix before the first adapted layer
    assert layers and all(m.training for m in layers)


def test_wrappers_added_after_the_trace_keep_the_rule():
    """FSDP and activation checkpointing wrap modules after the build-time trace (`_fsdp_wrapped_module`, ...):
    the traced names still match, so the rule holds instead of degrading."""

    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self._fsdp_wrapped_module = inner

        def forward(self, x):
            return self._fsdp_wrapped_module(x)

    _, nested = _nets()
    pol = DropoutPolicy("after_trainable", trace_order(nested, torch.randn(2, 3)), True)
    for i in range(3):
        nested[i] = Wrapper(nested[i])
    nested.train()
    pol.apply(nested)
    assert [m.training for m in nested.modules() if isinstance(m, nn.Dropout)] == [False, True]


def test_the_run_summary_names_the_policy_where_the_backbone_has_dropout():
    from transferlab.infra.results import summary

    base = {"status": "ok", "strategy": "lora", "train_size": 550}
    text = summary({**base, "dropout": {"policy": "after_trainable", "order": "traced", "layers": 31, "active": 30}})
    assert "dropout      after_trainable (30 of 31 layers in training mode)" in text
    assert text.index("dropout") < text.index("train size")
    no_dropout = {"policy": "after_trainable", "order": "traced", "layers": 0, "active": 0}  # EfficientNet-Lite0
    assert "dropout" not in summary({**base, "dropout": no_dropout})
