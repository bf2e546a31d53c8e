"""After a PEFT run: save the adapter in the run dir and re-evaluate LoRA merged into the base.

`run()` calls `export_adapter` when the strategy has `saves_adapter`. The adapter lands in
`<run dir>/adapter/` (peft's `save_pretrained` format: `adapter_config.json` +
`adapter_model.safetensors`, plus the task head as `head.safetensors` and the test-set outputs of the
run as `test_outputs.safetensors`). For mergeable strategies (LoRA, QLoRA) the weights are merged
with `merge_and_unload()` and the first `strategy.merge_check` test examples (null: all) are evaluated
again; `results.json` then says whether the merged outputs match the trained model's within `tol`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device


@torch.no_grad()
def evaluate(module, loaders, limit: int | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics and concatenated outputs of `module` on the loaders, outside the Trainer.

    Classifiers: `acc` per eval set and the logits `(N, K)`; instruction tuning: response-token
    `loss` and the per-example summed response log-likelihood `(N,)`. `limit`: stop after the batch that
    brings the examples seen to at least this many (the outputs are then the first rows of the full ones).
    """
    was_training = module.training
    module.eval()
    metrics, outputs = {}, []
    names = getattr(module, "eval_names", [""])
    per_set: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    seen = 0
    for name, loader in zip(names, loaders, strict=False):
        nll = n = 0.0
        lm = False
        for batch in loader:
            if limit is not None and seen >= limit:
                break
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
            seen += len(batch["labels"])
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


def export_adapter(strategy, module, data, out_dir: str | Path, tol: float = 1e-4, tested=None, device=None) -> dict:
    """Save the adapter (+ head, + the run's test outputs); merge and check the merged model if mergeable.

    `tested`: `(metrics, outputs)` of the run's own test pass (`TransferModule.test_outputs`), used instead
    of evaluating the unmerged model a second time. The merged model is evaluated on the first
    `strategy.merge_check` test examples (all with null) and compared output by output with the trained
    model's: `within_tol` when the largest difference is within `tol` of the outputs' scale (max(1, largest
    absolute output)), no prediction changes where the trained model's margin exceeds twice that, and, when
    the whole test set was checked, the metrics agree within `tol`. `device`: where those evaluations run
    (`run_device(cfg.hardware)`; after testing Lightning has left the model on the CPU); the adapter is saved
    from where the model is, and the model goes back there. results.json `adapter.device` records it
    (null where nothing was evaluated: prompt and prefix tuning on one process).
    """
    from safetensors.torch import save_file

    from transferlab.model.run_device import placed

    out = strategy.save_adapter(module.backbone, module.head, Path(out_dir) / "adapter")
    mergeable = getattr(strategy, "mergeable", False)
    evaluates = tested is None or mergeable  # else (prompt/prefix tuning: nothing to merge) no round trip
    device = device if evaluates and device is not None else module.device
    with placed(module, device):  # a no-op where it already is
        metrics, outputs = tested or evaluate(module, data.test_dataloader())
        info: dict = {"path": str(out), "test": metrics, "device": str(device) if evaluates else None}
        if mergeable:
            module.backbone.model = module.backbone.model.merge_and_unload()
            merged, merged_out = evaluate(module, data.test_dataloader(), limit=getattr(strategy, "merge_check", None))
            info["merged"] = merge_check(outputs, merged_out, metrics, merged, tol)
    save_file({"outputs": outputs.contiguous()}, str(out / "test_outputs.safetensors"))
    return info


def merge_check(outputs: torch.Tensor, merged_out: torch.Tensor, metrics: dict, merged: dict, tol: float) -> dict:
    """results.json `adapter.merged`: the merged model's outputs (the first rows of the test set, or all of it)
    against the trained model's."""
    n = len(merged_out)
    ref = outputs[:n]
    scale = max(1.0, float(ref.abs().max())) if n else 1.0
    diff = float((merged_out - ref).abs().max()) if n else 0.0
    info: dict = {"checked": n, "of": len(outputs), "max_output_diff": diff, "rel_output_diff": diff / scale}
    ok = diff <= tol * scale
    if ref.dim() == 2 and n:  # classifier logits: predictions that change although not near a tie
        top2 = ref.topk(min(2, ref.shape[1]), dim=1).values
        margin = top2[:, 0] - top2[:, -1]
        changed = int(((merged_out.argmax(1) != ref.argmax(1)) & (margin > 2 * tol * scale)).sum())
        info["prediction_changes"] = changed
        ok = ok and changed == 0
    if n == len(outputs):  # the whole test set: its metrics too
        info["test"] = merged
        info["max_metric_diff"] = max((abs(merged[k] - metrics[k]) for k in metrics if k in merged), default=0.0)
        ok = ok and info["max_metric_diff"] <= tol
    info.update(within_tol=ok, tol=tol)
    return info
