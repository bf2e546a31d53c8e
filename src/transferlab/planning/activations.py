"""Activation memory: the tensors autograd saves for backward in one training forward pass, traced on meta.

The forward runs on meta tensors (no compute, no memory) under `torch.autograd.graph.saved_tensors_hooks`;
every saved tensor that is not a parameter is counted once (views count their base). Floating tensors
are counted at the activation dtype `act_bytes` (2 under 16-bit / mixed precision). For a transformer
this reproduces Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models"): per layer about `s*b*h*(34 + 5*a*s/h)` bytes at 16 bit (s sequence, b batch, h hidden, a heads).
Activation checkpointing keeps only each block's input and recomputes one block at a time:
`outside + sum(block inputs) + max(block)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks: children of the ModuleList/Sequential holding the most parameters."""
    best, size = [], 0
    for m in model.modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) > 1:
            n = sum(p.numel() for p in m.parameters())
            if n > size:
                best, size = list(m), n
    return best


def trace(step, model: nn.Module, act_bytes: int) -> dict:
    """Run `step()` (a forward returning the loss) on meta and account the saved tensors.

    Returns:
        `{"total", "checkpointed", "blocks", "max_block", "block_inputs"}` in bytes.
    """
    params = {id(p) for p in model.parameters()}
    seen: dict[int, int] = {}
    where: dict[int, int] = {}
    current = [-1]
    inputs = [0]

    def size(t: torch.Tensor) -> int:
        return t.numel() * (act_bytes if t.is_floating_point() else t.element_size())

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params and id(base) not in seen:
            seen[id(base)], where[id(base)] = size(base), current[0]
        return t

    hooks = []
    blocks = _blocks(model)
    for i, blk in enumerate(blocks):

        def pre(_m, args, kwargs, i=i):
            current[0] = i
            x = args[0] if args else kwargs.get("hidden_states")
            inputs[0] += size(x) if isinstance(x, torch.Tensor) else 0

        hooks += [
            blk.register_forward_pre_hook(pre, with_kwargs=True),
            blk.register_forward_hook(lambda *_: current.__setitem__(0, -1)),
        ]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            step()
    finally:
        for h in hooks:
            h.remove()
    per_block = [0] * len(blocks)
    outside = 0
    for k, n in seen.items():
        if where[k] >= 0:
            per_block[where[k]] += n
        else:
            outside += n
    total = outside + sum(per_block)
    ckpt = outside + inputs[0] + max(per_block, default=0) if blocks else total
    return {
        "total": total,
        "checkpointed": min(ckpt, total),
        "blocks": len(blocks),
        "max_block": max(per_block, default=0),
        "block_inputs": inputs[0],
    }


def training_step(backbone, head: nn.Module, batch: int, seq_len: int, image_size: int | None, lm: bool):
    """A closure running the training forward + loss on meta inputs of the configured shape."""
    dev = torch.device("meta")
    dtype = next(head.parameters(), torch.empty(0)).dtype
    if backbone.info.kind == "image":
        c = backbone.preprocessing.in_chans
        x = torch.empty(batch, c, image_size, image_size, device=dev)  # (B, C, H, W)
        return lambda: F.cross_entropy(head(backbone(x).to(dtype)), torch.zeros(batch, dtype=torch.long, device=dev))
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=dev)  # (B, T)
    labels = torch.zeros(batch, dtype=torch.long, device=dev)
    # No attention mask: transformers inspects masks with `.item()`, which meta tensors can't answer.
    if lm:
        return lambda: backbone.model(input_ids=ids, labels=ids).loss
    if backbone.info.kind == "causal_lm":  # last token's final hidden state, as HFCausalLM.forward
        feats = lambda: backbone.model(input_ids=ids, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][
            :, -1
        ]
    else:  # mean-pooled token states, as HFEncoder.forward
        feats = lambda: backbone.model(input_ids=ids).last_hidden_state.mean(1)
    return lambda: F.cross_entropy(head(feats().to(dtype)), labels)
