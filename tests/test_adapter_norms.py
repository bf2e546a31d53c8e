"""`strategy=adapter strategy.train_norms=true` trains the normalisation layers by type, whatever their names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferlab.backbones.base import BackboneInfo
from transferlab.strategies.adapter import NORMS, SUBLAYERS, Adapter


class Stub(nn.Module):
    """The parts of an HF backbone that `Adapter.apply` reads, around a tiny randomly initialised model."""

    peft_task_type = "FEATURE_EXTRACTION"

    def __init__(self, model, kind: str) -> None:
        super().__init__()
        self.model, self.num_features = model, model.config.hidden_size
        self.info = BackboneInfo(name="tiny", source="random-init", license="MIT", kind=kind)


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16, bos_token_id=0, eos_token_id=0)
    return Stub(GPT2LMHeadModel(cfg), "causal_lm")


def bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    return Stub(BertModel(cfg), "text")


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=50,
    )
    return Stub(LlamaForCausalLM(cfg), "causal_lm")


# The normalisation layers of each tiny model, by name (what the type-based selection must find).
NORM_LAYERS = {
    gpt2: [
        "transformer.h.0.ln_1",
        "transformer.h.0.ln_2",
        "transformer.h.1.ln_1",
        "transformer.h.1.ln_2",
        "transformer.ln_f",
    ],
    bert: ["embeddings.LayerNorm"]
    + [f"encoder.layer.{i}.{s}.LayerNorm" for i in range(2) for s in ("attention.output", "output")],
    llama: [f"model.layers.{i}.{s}" for i in range(2) for s in ("input_layernorm", "post_attention_layernorm")]
    + ["model.norm"],
}


def trained_outside_adapters(bb) -> set[str]:
    return {n.rsplit(".", 1)[0] for n, p in bb.model.named_parameters() if p.requires_grad and ".adapter." not in n}


@pytest.mark.parametrize("make", list(NORM_LAYERS), ids=lambda f: f.__name__)
def test_train_norms_selects_the_norm_layers_by_type(make):
    bb = make()
    Adapter(train_norms=True, bottleneck=4).apply(bb, nn.Linear(32, 2))
    assert trained_outside_adapters(bb) == set(NORM_LAYERS[make])

    bb = make()
    Adapter(train_norms=False, bottleneck=4).apply(bb, nn.Linear(32, 2))
    assert trained_outside_adapters(bb) == set()


def test_gpt2_layer_norms_get_gradients():
    bb = gpt2()
    Adapter(train_norms=True, bottleneck=4).apply(bb, nn.Linear(32, 2))
    bb.model(input_ids=torch.randint(0, 50, (2, 5))).logits.square().mean().backward()
    norms = [p for n, p in bb.model.named_parameters() if ".ln_" in n]
    assert len(norms) == 10 and all(p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0 for p in norms)


def test_every_adaptable_architecture_declares_its_norm_layers():
    assert set(NORMS) == set(SUBLAYERS)
