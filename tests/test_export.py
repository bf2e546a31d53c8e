"""Export of fine-tuned runs: ONNX (onnxruntime parity), safetensors, transformers save_pretrained; lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_config

from transferlab.errors import ConfigError
from transferlab.export import export

TOL = 1e-4  # max abs logit difference on 100 held-out test inputs


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """efficientnet_lite0 fully fine-tuned on digits (tiny budget), evaluated on the whole test split."""
    out = tmp_path_factory.mktemp("image_run")
    assert run_config(["strategy=full", "trainer.limit_test_batches=1.0"], out)["status"] == "ok"
    return out


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """minilm + LoRA on (synthetic) reviews: a few steps, the adapter merged and re-evaluated by the run."""
    out = tmp_path_factory.mktemp("lora_run")
    result = run_config(
        [
            "backbone=minilm",
            "data=reviews",
            "strategy=lora",
            "data.source.n_per_class=200",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            "trainer.enable_progress_bar=false",
        ],
        out,
        fast=False,
    )
    assert result["status"] == "ok" and result["adapter"]["merged"]["within_tol"]
    assert result["adapter"]["device"] == "cpu"  # the merged check ran on the run's own device
    return out


@pytest.mark.slow
def test_onnx_parity_efficientnet(image_run, tmp_path):
    import onnx

    info = export(image_run, "onnx", tmp_path / "onnx")
    print(
        f"\nefficientnet_lite0 -> ONNX opset {info['opset']}: max abs diff {info['max_abs_diff']:.2e} "
        f"on {info['n_inputs']}"
    )
    assert info["within_tol"] and info["max_abs_diff"] <= TOL and info["n_inputs"] == 100 and info["opset"] == 17
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["license"]["license"] == "Apache-2.0"


@pytest.mark.slow
def test_safetensors_reloads_exactly(image_run, tmp_path):
    from safetensors import safe_open

    info = export(image_run, "safetensors", tmp_path / "st")
    assert info["max_abs_diff"] == 0.0
    with safe_open(str(tmp_path / "st" / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"])["backbone"]["name"] == "efficientnet_lite0"
    assert json.loads(meta["license"])["license"] == "Apache-2.0"


@pytest.mark.slow
def test_onnx_parity_minilm_lora_merged(lora_run, tmp_path):
    info = export(lora_run, "onnx", tmp_path / "onnx")
    print(
        f"\nminilm + LoRA (merged) -> ONNX opset {info['opset']}: max abs diff {info['max_abs_diff']:.2e} "
        f"on {info['n_inputs']}"
    )
    assert info["lora_merged"] and info["within_tol"] and info["max_abs_diff"] <= TOL and info["n_inputs"] == 100
    assert info["inputs"] == ["input_ids", "attention_mask"]
    assert info["dynamic_axes"]["input_ids"] == {0: "batch", 1: "sequence"}


@pytest.mark.slow
def test_hf_folder_loads_with_plain_transformers(lora_run, tmp_path):
    from transformers import AutoConfig, AutoModel

    info = export(lora_run, "hf", tmp_path / "hf")
    assert info["lora_merged"] and info["max_abs_diff"] <= TOL
    assert {"config.json", "model.safetensors", "head.safetensors", "transferlab.json", "tokenizer.json"} <= set(
        info["files"]
    )
    model = AutoModel.from_pretrained(str(tmp_path / "hf"))
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged: a plain BERT
    assert AutoConfig.from_pretrained(str(tmp_path / "hf")).id2label == {0: "negative", 1: "positive"}


@pytest.mark.slow
def test_backbone_imported_from_onnx_exports_back_to_onnx(tmp_path):
    """ONNX file -> onnx2torch -> full fine-tuning -> ONNX again, checked with onnxruntime."""
    import timm
    import torch
    from safetensors.torch import load_file

    from transferlab.backbones.weights import efficientnet_lite0

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(load_file(str(efficientnet_lite0().path)))
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, 3, 32, 32),),
        str(tmp_path / "in.onnx"),
        dynamo=False,
        opset_version=17,
        dynamic_axes={"input": {0: "batch", 2: "h", 3: "w"}},
        input_names=["input"],
    )
    run = tmp_path / "run"
    result = run_config(
        [
            "backbone=onnx",
            f"backbone.path={tmp_path / 'in.onnx'}",
            "backbone.url=null",
            "strategy=full",
            "backbone.mean=[0.5,0.5,0.5]",
            "backbone.std=[0.5,0.5,0.5]",
        ],
        run,
    )
    assert result["status"] == "ok"
    info = export(run, "onnx", tmp_path / "out")
    assert info["within_tol"] and info["max_abs_diff"] <= TOL and info["n_inputs"] == 100


@pytest.mark.slow
def test_bad_exports_stop_early(image_run, tmp_path):
    with pytest.raises(ConfigError, match="needs a transformers backbone"):
        export(image_run, "hf", tmp_path / "hf")
    with pytest.raises(ConfigError, match="has no results.json"):
        export(tmp_path, "onnx")
    proc = subprocess.run(
        [sys.executable, "-m", "transferlab.export", str(tmp_path), "--format", "onnx"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "error: " in proc.stderr and "has no results.json" in proc.stderr


@pytest.mark.slow
def test_default_job_imports_no_onnx_or_tensorflow(tmp_path):
    """The hub extras stay lazy: the default run never imports onnx, onnxruntime, onnx2torch or TensorFlow."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; from conftest import run_config; "
        f"assert run_config([], Path({str(tmp_path)!r}))['status'] == 'ok'; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnx2torch', 'tensorflow', 'tf2onnx') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
