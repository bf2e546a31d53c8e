"""`python -m transferlab.plan <overrides>`: parameters and memory of a configured run, from the architecture alone.

Composes the same transferlab/conf tree as train.py, builds the backbone on the meta device (no weights read),
applies the configured strategy exactly as training does, and prints parameters, bytes for weights
(by dtype; 4 bit with its constants for QLoRA), gradients, optimizer states, traced activations (with
and without activation checkpointing), the total and which GPUs it fits.

    python -m transferlab.plan backbone=llama65b data=instructions strategy=qlora strategy.r=16 hardware=gpu_bf16
    python -m transferlab.plan backbone=llama7b data=instructions strategy=full backbone.dtype=float32 hardware=gpu_fp16
    python -m transferlab.plan backbone=bert_base plan.arch=/models/my_bert      # any folder with a config.json

`plan.arch=<name|folder>` picks the architecture, `plan.seq_len=N` the sequence length (default: the
backbone's max_length), `plan.json=PATH` also writes the plan as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from transferlab.config import rules
from transferlab.config.compose import CONF
from transferlab.config.instantiate import build as instantiate
from transferlab.errors import ConfigError, TransferlabError
from transferlab.planning import activations, memory
from transferlab.planning.arch import build_meta_backbone
from transferlab.planning.table import GPU_RUNTIME, GPUS_GB, render, why_not

CPU_RUNTIME_MB = 1130.0  # RSS of python + torch 2.14 + lightning + transformers + peft imports (measured, CPU build)


def _act_bytes(cfg: DictConfig, backbone, strategy) -> int:
    """Bytes per activation: 2 under 16-bit precision, else the compute dtype (QLoRA's or the weights')."""
    precision = str(cfg.get("hardware", {}).get("precision", "32-true"))
    if "16" in precision:
        return 2
    dtype = (strategy.quantization or {}).get("compute_dtype") or backbone.dtype
    return torch.empty(0, dtype=getattr(torch, str(dtype))).element_size()


def _data_shape(cfg: DictConfig) -> tuple[int, list | None, bool, int | None, str]:
    """(batch size, class names, instruction task?, image size, modality) from the data config (cheap `prepare`)."""
    data = instantiate(cfg.data)
    data.prepare()
    classes = None if data.lm_task else list(data.classes or range(data.num_classes))
    return int(cfg.data.batch_size), classes, data.lm_task, cfg.data.get("image_size"), data.modality


def plan(cfg: DictConfig, arch: str | None = None, seq_len: int | None = None) -> dict:
    """The plan of run config `cfg` (bytes), built on the meta device. Raises `ConfigError` on bad input."""
    strategy = instantiate(cfg.strategy)
    batch, classes, lm, image_size, modality = _data_shape(cfg)
    backbone = build_meta_backbone(cfg.backbone, arch)
    rules.check_modality(backbone.info.kind, modality, backbone.info.name, rules.choice("data", None))
    with torch.device("meta"):
        head = nn.Identity() if lm else nn.Sequential(nn.Dropout(0.0), nn.Linear(backbone.num_features, len(classes)))
    notes = []
    if strategy.init_text:  # text-initialised prompts need the tokenizer: same count without
        strategy.init_text = None
        notes.append("prompt planned with random init (init_text needs the tokenizer; same parameter count)")
    if strategy.trains:
        backbone = strategy.apply(backbone, head, classes)
    else:
        strategy.check(backbone)
        backbone.requires_grad_(False)
        head.requires_grad_(False)
    model = nn.ModuleList([backbone, head])
    quant = backbone.quantization if backbone.quantized else None
    out = {
        "backbone": backbone.info.name,
        "model_type": backbone.info.extra.get("model_type", backbone.info.name),
        "strategy": strategy.name,
        "batch_size": batch,
        "notes": notes,
        "params": memory.count(model),
    }
    out["weights"] = memory.weight_bytes(model, backbone.quantized, (quant or {}).get("double_quant", True))
    out.update(memory.grads_and_states(model, cfg.get("optimizer")))
    act_bytes = _act_bytes(cfg, backbone, strategy)
    if backbone.info.kind == "image":
        image_size = int(image_size or backbone.preprocessing.input_size[1])
        out["input"] = f"{batch} x {backbone.preprocessing.in_chans} x {image_size} x {image_size} images"
    else:
        seq_len = int(seq_len or backbone.max_length)
        out["input"], out["seq_len"] = f"{batch} x {seq_len} tokens", seq_len
    acts = {"total": 0, "checkpointed": 0, "blocks": 0, "max_block": 0, "block_inputs": 0}
    if strategy.trains and any(p.requires_grad for p in model.parameters()):
        step = activations.training_step(backbone, head, batch, seq_len or 0, image_size, lm)
        acts = activations.trace(step, backbone, act_bytes)
    ckpt = bool(strategy.gradient_checkpointing)
    out.update(act_bytes=act_bytes, activations=acts, checkpointing=ckpt)
    out["formula"] = _formula(backbone, batch, seq_len, act_bytes) if backbone.info.kind != "image" else None
    used = acts["checkpointed"] if ckpt else acts["total"]
    out["model_bytes"] = sum(out["weights"].values()) + out["gradients"] + out["optimizer_states"] + used
    # Loading stages the full-precision checkpoint in host memory (the state dict or the safetensors pages
    # read, and for a 4-bit load the unquantized tensors before bitsandbytes packs them); on a CPU run that
    # high-water mark stays in the process's peak RSS, on a GPU run it is host memory, not device memory.
    out["load_bytes"] = sum(p.numel() * p.element_size() for p in {id(p): p for p in backbone.parameters()}.values())
    out["total"] = out["model_bytes"] + GPU_RUNTIME
    out["fits"] = [g for g in GPUS_GB if out["total"] <= g * 1e9]
    return out


def _formula(backbone, batch: int, seq_len: int | None, act_bytes: int) -> float | None:
    """Korthikanti et al.'s closed form L*s*b*h*(34 + 5*a*s/h) bytes at 16 bit, scaled to `act_bytes`."""
    c = getattr(backbone.model, "config", None)
    if c is None or not seq_len or not hasattr(c, "num_attention_heads"):
        return None
    h, a, L = c.hidden_size, c.num_attention_heads, c.num_hidden_layers
    return L * seq_len * batch * h * (34 + 5 * a * seq_len / h) * act_bytes / 2


def predict(cfg: DictConfig, module: nn.Module | None = None, data=None) -> dict:
    """The plan for results.json (MB = MiB, like `peak_mem_mb`), next to which the run's measured peak is written.

    `predicted_peak_mem_mb` is the GPU total on a GPU run, else the CPU process estimate (runtime +
    model + the full-precision checkpoint staged while loading, `load_staging_mb`). With the run's
    `module`, its materialised parameter counts are checked against the plan;
    with its built `data`, text is planned at the longest of the first training batches (they are
    padded to their longest text, not to max_length). Never raises: a failed plan is `{"error": ...}`.
    """
    try:
        arch = cfg.plan.get("arch") if cfg.get("plan") else None
        p = _memo_plan(cfg, arch, seen_seq_len(data) if data is not None else None)
    except Exception as e:  # the run must not fail because of its estimate
        return {"error": f"{type(e).__name__}: {e}"}
    mb = 2.0**20
    gpu = str(cfg.get("hardware", {}).get("accelerator", "cpu")) in ("gpu", "cuda", "auto")
    out = {
        **p["params"],
        "weights_mb": round(sum(p["weights"].values()) / mb, 1),
        "gradients_mb": round(p["gradients"] / mb, 1),
        "optimizer_states_mb": round(p["optimizer_states"] / mb, 1),
        "activations_mb": round(p["activations"]["total"] / mb, 1),
        "activations_checkpointed_mb": round(p["activations"]["checkpointed"] / mb, 1),
        "runtime_mb": round(GPU_RUNTIME / mb if gpu else CPU_RUNTIME_MB, 1),
        "fits_gpus_gb": p["fits"],
    }
    out["seq_len"] = p.get("seq_len")
    out["load_staging_mb"] = 0.0 if gpu else round(p["load_bytes"] / mb, 1)
    out["predicted_peak_mem_mb"] = round(p["model_bytes"] / mb + out["runtime_mb"] + out["load_staging_mb"], 1)
    if module is not None:
        from transferlab.strategies.peft_base import count_params  # 4-bit weights at their logical size

        real = count_params(module)
        out["counts_match"] = {"trainable": real["trainable"], "total": real["total"]} == p["params"]
    return out


_PLANS: dict[str, dict] = {}  # a sweep worker plans each distinct setting once (seeds and sizes share it)


def _memo_plan(cfg: DictConfig, arch: str | None, seq_len: int | None) -> dict:
    """`plan(...)`, reused within the process for configs that differ only in what the plan doesn't read
    (seed, training-set size, output paths, loggers, callbacks)."""
    import copy

    tree = OmegaConf.to_container(cfg, resolve=False)  # pruned before resolving: paths and loggers read Hydra's
    for key in ("seed", "paths", "hydra", "logger", "callbacks"):  # runtime, set only inside a Hydra run
        tree.pop(key, None)
    for key in ("train_per_class", "seed", "split_seed"):
        tree.get("data", {}).pop(key, None)
    try:
        tree = OmegaConf.to_container(OmegaConf.create(tree), resolve=True, throw_on_missing=False)
    except Exception:  # an interpolation only a Hydra run resolves: the unresolved text keys the memo as well
        pass
    key = json.dumps([tree, arch, seq_len], sort_keys=True, default=str)
    if key not in _PLANS:
        while len(_PLANS) >= 8:
            del _PLANS[next(iter(_PLANS))]
        _PLANS[key] = plan(cfg, arch=arch, seq_len=seq_len)
    return copy.deepcopy(_PLANS[key])


def seen_seq_len(data, batches: int = 8) -> int | None:
    """Longest `input_ids` length in the first `batches` training batches of a built datamodule (None: not text)."""

    def find(x):
        if isinstance(x, dict):
            return x["input_ids"].shape[-1] if "input_ids" in x else max((find(v) or 0 for v in x.values()), default=0)
        return max((find(v) or 0 for v in x), default=0) if isinstance(x, (list, tuple)) else 0

    if getattr(data, "modality", "text") != "text":  # images: no sequence length (and no batches to decode)
        return None
    try:
        lengths = [find(b) for _, b in zip(range(batches), data.train_dataloader(), strict=False)]
    except Exception:  # not set up yet, or not a text datamodule
        return None
    return max(lengths, default=0) or None


def compose(overrides: list[str]) -> tuple[DictConfig, dict]:
    """Compose transferlab/conf with `overrides`; `plan.KEY=VALUE` overrides are the planner's own options."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    opts = {a.split("=", 1)[0][5:]: a.split("=", 1)[1] for a in overrides if a.startswith("plan.") and "=" in a}
    rest = [a for a in overrides if not a.startswith("plan.")]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        try:
            cfg = hydra_compose("config", overrides=rest)
        except Exception as e:  # unknown group option / key: Hydra's message says which
            raise ConfigError(f"{e}") from None
    return cfg, opts


def main(argv: list[str] | None = None) -> int:
    """CLI entry: print the plan; exit 2 with one message on bad input or when it fits no listed GPU."""
    try:
        cfg, opts = compose(list(sys.argv[1:] if argv is None else argv))
        p = plan(cfg, arch=opts.get("arch"), seq_len=int(opts["seq_len"]) if "seq_len" in opts else None)
    except TransferlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(p))
    if "json" in opts:
        Path(opts["json"]).write_text(json.dumps(p, indent=2, default=str))
    if not p["fits"]:
        print(f"error: fits no listed GPU: {why_not(p)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transferlab").setLevel(logging.ERROR)  # qlora's "reloading in 4 bit" is meant for real runs
    sys.exit(main())
