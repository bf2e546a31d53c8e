"""`transferlab.plan`: meta-device counts equal materialised ones; the seed text's figures; clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from torch import nn

from transferlab.config.instantiate import build
from transferlab.plan import compose, main, plan, predict
from transferlab.planning import memory


def _real(cfg) -> tuple[dict, nn.Module]:
    """Materialise the run's model the way run() does and count it (4-bit weights at logical size)."""
    from transferlab.strategies.peft_base import count_params

    torch.manual_seed(0)
    strategy = build(cfg.strategy)
    data = build(cfg.data)
    data.prepare()
    backbone = build(cfg.backbone)
    lm = data.lm_task
    head = nn.Identity() if lm else nn.Sequential(nn.Dropout(0.0), nn.Linear(backbone.num_features, data.num_classes))
    backbone = strategy.apply(backbone, head, data.classes)
    model = nn.ModuleList([backbone, head])
    c = count_params(model)
    return {"trainable": c["trainable"], "total": c["total"], "weight_bytes": c["weight_bytes"]}, model


CASES = [("efficientnet_lite0", "digits", s) for s in ("full", "feature_extraction", "partial", "progressive")] + [
    ("minilm", "reviews", s)
    for s in ("full", "feature_extraction", "partial", "lora", "qlora", "prefix_tuning", "prompt_tuning", "adapter")
]
SLOW_CASES = [
    ("smollm2", "instructions", s) for s in ("full", "lora", "qlora", "prefix_tuning", "prompt_tuning", "adapter")
] + [("smollm2", "reviews", "lora")]


def _check_counts(backbone, data, strategy):
    cfg, _ = compose([f"backbone={backbone}", f"data={data}", f"strategy={strategy}"])
    p = plan(cfg)
    real, _ = _real(cfg)
    assert p["params"] == {"trainable": real["trainable"], "total": real["total"]}
    assert p["params"]["trainable"] > 0
    return p, real


@pytest.mark.parametrize("backbone,data,strategy", CASES)
def test_meta_counts_equal_materialised(backbone, data, strategy):
    _check_counts(backbone, data, strategy)


@pytest.mark.slow
@pytest.mark.parametrize("backbone,data,strategy", SLOW_CASES)
def test_meta_counts_equal_materialised_smollm2(backbone, data, strategy):
    p, real = _check_counts(backbone, data, strategy)
    if strategy == "qlora":  # bitsandbytes' real storage: packed 4 bit + absmax constants, within 0.5 %
        assert sum(p["weights"].values()) == pytest.approx(real["weight_bytes"], rel=5e-3)


def test_qlora_bits_per_weight():
    assert memory.bits_per_4bit_weight(True) == pytest.approx(4.127, abs=1e-3)
    assert memory.bits_per_4bit_weight(False) == 4.5


def test_predict_for_results_json():
    cfg, _ = compose(["backbone=minilm", "data=reviews", "strategy=lora"])
    _, model = _real(cfg)
    out = predict(cfg, model)
    assert out["counts_match"] is True
    assert out["predicted_peak_mem_mb"] > out["runtime_mb"] + out["weights_mb"] > 1000
    assert out["activations_checkpointed_mb"] < out["activations_mb"]


def test_seed_figures_7b():
    # LoRA r=16 on q,v of Llama-2-7B: 32 layers x 2 x 16 x (4096 + 4096)
    cfg, _ = compose(["backbone=llama7b", "data=instructions", "strategy=lora", "strategy.r=16", "data.batch_size=1"])
    assert plan(cfg)["params"]["trainable"] == 32 * 2 * 16 * 8192
    # Full fine-tuning, fp32 weights under 16-bit mixed precision: 4 + 4 + 8 = 16 bytes per parameter
    cfg, _ = compose(
        [
            "backbone=llama7b",
            "data=instructions",
            "strategy=full",
            "backbone.dtype=float32",
            "hardware=gpu_fp16",
            "data.batch_size=1",
        ]
    )
    p = plan(cfg)
    static = sum(p["weights"].values()) + p["gradients"] + p["optimizer_states"]
    assert static / p["params"]["total"] == pytest.approx(16, abs=0.01)
    assert static / 1e9 == pytest.approx(107.8, abs=0.5)  # 6.74 B params (112 GB for a round 7 B)
    # QLoRA: 4-bit weights of the quantised linears, ~3.6 GB per 7 B weights (4.127 bits each)
    cfg, _ = compose(["backbone=llama7b", "data=instructions", "strategy=qlora", "data.batch_size=1"])
    p = plan(cfg)
    assert p["weights"]["4bit"] / 1e9 == pytest.approx(6.48e9 * 4.127 / 8 / 1e9, rel=0.01)


@pytest.mark.slow
def test_llama65b_qlora_fits_48gb_with_checkpointing():
    args = [
        "backbone=llama65b",
        "data=instructions",
        "strategy=qlora",
        "strategy.r=16",
        "hardware=gpu_bf16",
        "data.batch_size=1",
        "strategy.gradient_checkpointing=true",
        "strategy.target_modules=[q_proj,v_proj]",
    ]
    p = plan(compose(args)[0])
    assert p["params"]["trainable"] == 80 * 2 * 16 * 16384  # 41.9 M
    assert 48 in p["fits"] and 24 not in p["fits"]  # 38.1 GB: 4-bit base 33.4 + fp32 embeddings/head 2.3 + ...


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "transferlab.plan", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_prints_table():
    r = _cli("backbone=minilm", "data=reviews", "strategy=qlora")
    assert r.returncode == 0, r.stderr
    for word in ("parameters", "4bit", "gradients", "optimizer", "activations", "checkpointed", "total", "fits on"):
        assert word in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["plan.arch=no_such_model", "backbone=minilm", "data=reviews"], "unknown architecture 'no_such_model'"),
        (["backbone=no_such_model"], "no_such_model"),
        (["strategy=prefix_tuning"], "adapt a image backbone"),
        (["backbone=efficientnet_lite0", "data=reviews"], "pick a matching pair"),
    ],
)
def test_bad_input_is_one_clear_message(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_impossible_batch_says_why(capsys):
    args = ["backbone=llama7b", "data=instructions", "strategy=full", "data.batch_size=512"]
    assert plan(compose(args)[0])["fits"] == []
    assert main(args) == 2
    out = capsys.readouterr()
    assert "no listed GPU" in out.out
    assert "fits no listed GPU" in out.err and "activations" in out.err and "data.batch_size" in out.err
