"""The LeNet backbone (backbone=lenet) and the independent digits-DA reference script (bench/da_reference.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from transferlab.backbones.lenet import LeNet
from transferlab.errors import ConfigError

KEYS = {
    "method",
    "weight",
    "seed",
    "steps",
    "bottleneck",
    "source_acc",
    "target_acc",
    "seconds",
    "pad_conv",
    "pad_bottleneck",
}


def test_lenet_has_800_features_at_28_px():
    bb = LeNet().eval()
    assert bb.num_features == 800
    assert bb(torch.randn(2, 1, 28, 28)).shape == (2, 800)
    assert bb(torch.randn(2, 1, 32, 32)).shape == (2, 800)  # the contract tests' size: adaptive second pool
    assert bb.preprocessing.in_chans == 1 and bb.preprocessing.input_size == (1, 28, 28)
    assert len(bb.preprocessing.mean) == 1  # NormalizedImages expands gray to len(mean) = 1 channel
    assert bb.info.source == "random-init" and bb.info.kind == "image"


def test_lenet_matches_the_classic_network_at_28_px():
    """At 28x28 the adaptive pool is exactly MaxPool2d(2): same output as tllib's Sequential LeNet."""
    torch.manual_seed(0)
    bb = LeNet().eval()
    classic = torch.nn.Sequential(
        bb.conv1,
        torch.nn.MaxPool2d(2),
        torch.nn.ReLU(),
        bb.conv2,
        torch.nn.Dropout2d(0.5),
        torch.nn.MaxPool2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
    ).eval()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(bb(x), classic(x), atol=0, rtol=0)


def test_lenet_layer_groups_cover_every_parameter_once():
    bb = LeNet()
    groups = bb.layer_groups()
    assert [g.name for g in groups] == ["0:conv1", "1:conv2"]
    seen = [id(p) for g in groups for p in g.parameters()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in bb.parameters()}
    assert sum(g.numel() for g in groups) == sum(p.numel() for p in bb.parameters()) == 520 + 25050


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 12, 12), (1, 28, 28)])
def test_lenet_refuses_inputs_it_cannot_take(shape):
    with pytest.raises(ConfigError, match="gray images"):
        LeNet()(torch.randn(*shape))
    with pytest.raises(ConfigError, match="dropout"):
        LeNet(dropout=1.0)


def test_reference_script_runs_end_to_end(tmp_path):
    method = "cdan_e"  # the longest path: GRL, multilinear map, entropy weights
    out = tmp_path / "res.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "da_reference.py"),
            "--method",
            method,
            "--seed",
            "1",
            "--max-steps",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and set(rows[0]) == KEYS
    assert rows[0]["method"] == method and rows[0]["seed"] == 1 and rows[0]["steps"] == 5
    assert 0 <= rows[0]["target_acc"] <= 1 and 0 <= rows[0]["source_acc"] <= 1
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == rows[0]


def test_reference_script_is_independent_of_transferlab():
    tree = ast.parse((ROOT / "bench" / "da_reference.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"argparse", "json", "time", "pathlib", "numpy", "torch", "sklearn", "mlxtend"}, imported


def test_partial_on_lenet_asks_more_groups_than_it_has_refused_before_the_data():
    """LeNet has 2 layer groups; partial's default asks 4. Counted from the model itself at validation (it is tiny and
    has no weights to read), so the refusal comes before the data is built, as for timm and transformers backbones."""
    from transferlab.config.groups import check_groups

    lenet = {"_target_": "transferlab.backbones.lenet.LeNet", "dropout": 0.5}
    with pytest.raises(ConfigError, match=r"trainable_groups=4 but the backbone has only 2 layer groups \(0:conv1"):
        check_groups({"backbone": lenet, "strategy": {"trainable_groups": 4}})
    check_groups({"backbone": lenet, "strategy": {"trainable_groups": 2}})
