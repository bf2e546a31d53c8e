"""Text encoders' layer groups: the top group is the last transformer block, never the unused pooler."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from transferlab.strategies.full import Full
from transferlab.strategies.partial import Partial
from transferlab.strategies.peft_base import count_params


@pytest.fixture(scope="module")
def minilm():
    from transferlab.backbones import hf_assets
    from transferlab.backbones.hf import HFEncoder

    return HFEncoder(path=hf_assets.minilm(), name="minilm")


def test_the_encoder_has_no_pooler_and_its_groups_end_with_the_last_block(minilm):
    assert minilm.model.pooler is None  # forward pools last_hidden_state itself
    assert not any("pooler" in n for n, _ in minilm.named_parameters())
    groups = minilm.layer_groups()
    assert [g.name for g in groups] == ["0:embeddings", *(f"{i + 1}:block{i}" for i in range(6))]
    seen = [id(p) for g in groups for p in g.parameters()]
    assert sorted(seen) == sorted(id(p) for p in minilm.parameters())  # every parameter, once


def test_one_trainable_group_is_the_last_block_and_it_gets_gradients(minilm):
    head = torch.nn.Linear(minilm.num_features, 2)
    Partial(trainable_groups=1).apply(minilm, head)
    trainable = {n: p for n, p in minilm.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.5." in n for n in trainable)
    assert len(trainable) == len(minilm.layer_groups()[-1].params)
    module = torch.nn.Module()
    module.backbone, module.head = minilm, head
    block = sum(p.numel() for p in trainable.values())
    assert count_params(module)["trainable"] == block + sum(p.numel() for p in head.parameters())

    x = minilm.tokenize(["a great book", "an awful laptop that overheats"])
    minilm.train()
    torch.nn.functional.cross_entropy(head(minilm(x)), torch.tensor([1, 0])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_layerwise_decay_starts_at_the_last_block(minilm):
    head = torch.nn.Linear(minilm.num_features, 2)
    strategy = Full(lr=1e-3, backbone_lr_mult=0.1, lr_decay=0.5)
    strategy.apply(minilm, head)
    lrs = {g["name"]: g["lr"] for g in strategy.param_groups(minilm, head)}
    assert lrs["backbone.6:block5"] == pytest.approx(1e-4) and lrs["backbone.5:block4"] == pytest.approx(5e-5)
    assert lrs["backbone.0:embeddings"] == pytest.approx(1e-4 * 0.5**6)
    assert all(p.requires_grad for p in minilm.parameters())  # full: nothing left out, no unused parameter


def test_the_planners_meta_encoder_has_the_same_groups(minilm):
    from transferlab.planning.arch import build_meta_backbone

    node = OmegaConf.create({"_target_": "transferlab.backbones.hf.HFEncoder", "name": "minilm"})
    meta = build_meta_backbone(node)
    assert meta.model.pooler is None  # so `plan` counts the parameters a run has
    assert [g.name for g in meta.layer_groups()] == [g.name for g in minilm.layer_groups()]
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in minilm.parameters())
