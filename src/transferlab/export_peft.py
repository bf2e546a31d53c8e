"""After a PEFT run: save the adapter in the run dir and re-evaluate LoRA merged into the base.

`run()` calls `export_adapter` when the strategy has `saves_adapter`. The adapter lands in
`<run dir>/adapter/` (peft's `save_pretrained` format: `adapter_config.json` +
`adapter_model.safetensors`, plus the task head as `head.safetensors` and the test-set outputs of the
run as `test_outputs.safetensors`). For mergeable strategies (LoRA, QLoRA) the weights are merged
with `merge_and_unload()` and the test set is evaluated again; `results.json` then says whether the
merged metric matches the unmerged one within `tol`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device


@torch.no_grad()
def evaluate(module, loaders) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics and concatenated outputs of `module` on the loaders, outside the Trainer.

    Classifiers: `acc` per eval set and the logits `(N, K)`; instruction tuning: response-token
    `loss` and the per-example summed response log-likelihood `(N,)`.
    """
    was_training = module.training
    module.eval()
    metrics, outputs = {}, []
    names = getattr(module, "eval_names", [""])
    per_set: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for name, loader in zip(names, loaders, strict=False):
        nll = n = 0.0
        lm = False
        for batch in loader:
            batch = move_data_to_device(batch, module.device)
            if "input_ids" in batch:  # instruction tuning
                lm = True
                logits = module(batch).logits[:, -batch["labels"].shape[1] :].float()  # (B, T, V)
                tgt = batch["labels"][:, 1:]  # (B, T-1)
                logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                mask = tgt != -100
                nll += float(-(logp * mask).sum())
                n += float(mask.sum())
                outputs.append((logp * mask).sum(1).cpu())
            else:
                per_set.setdefault(name, []).append((module(batch["inputs"]).float().cpu(), batch["labels"].cpu()))
        if lm:
            metrics[f"test/{name}_loss" if name else "test/loss"] = nll / max(n, 1)
    module.train(was_training)
    if per_set:
        return classification_outputs(per_set)
    return metrics, torch.cat(outputs)


def classification_outputs(per_set: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]):
    """`(metrics, logits)` of a classifier's test pass: accuracy per eval set (`test/acc`, or `test/<name>_acc`)
    and the logits `(N, K)` concatenated in loader order, from `{set name: [(logits, labels) per batch]}`.
    The run's own test pass (`TransferModule.test_outputs`) and `evaluate` both report through it."""
    metrics, outputs = {}, []
    for name, chunks in per_set.items():
        logits = torch.cat([lg for lg, _ in chunks])
        labels = torch.cat([lb.cpu() for _, lb in chunks])
        metrics[f"test/{name}_acc" if name else "test/acc"] = float((logits.argmax(-1) == labels).float().mean())
        outputs.append(logits)
    return metrics, torch.cat(outputs)


def export_adapter(strategy, module, data, out_dir: str | Path, tol: float = 1e-4, tested=None) -> dict:
    """Save the adapter (+ head, + the run's test outputs); merge and re-evaluate if mergeable.

    `tested`: `(metrics, outputs)` of the run's own test pass (`TransferModule.test_outputs`), used instead
    of evaluating the unmerged model a second time.
    """
    from safetensors.torch import save_file

    out = strategy.save_adapter(module.backbone, module.head, Path(out_dir) / "adapter")
    metrics, outputs = tested or evaluate(module, data.test_dataloader())
    save_file({"outputs": outputs.contiguous()}, str(out / "test_outputs.safetensors"))
    info: dict = {"path": str(out), "test": metrics}
    if getattr(strategy, "mergeable", False):
        module.backbone.model = module.backbone.model.merge_and_unload()
        merged, merged_out = evaluate(module, data.test_dataloader())
        diff = max(abs(merged[k] - metrics[k]) for k in metrics)
        info["merged"] = {
            "test": merged,
            "max_metric_diff": diff,
            "max_output_diff": float((merged_out - outputs).abs().max()),
            "within_tol": diff <= tol,
            "tol": tol,
        }
    return info
