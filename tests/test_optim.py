"""`fused_optimizer` (auto | true | false): which update kernel a run's optimizer uses, that the choice is
recorded, that an explicit `optimizer.fused` / `optimizer.foreach` wins, and that the fused and default
kernels train to the same metrics (they round differently: not bit-identical)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_config

from transferlab.model.optim import choose


def _cfg(**kw):
    return OmegaConf.create({"_target_": "torch.optim.AdamW", "_partial_": True, "weight_decay": 0.01, **kw})


def test_auto_fuses_on_a_cpu_and_leaves_accelerators_and_explicit_settings_alone() -> None:
    adamw = functools.partial(torch.optim.AdamW, weight_decay=0.01)
    fn, sec = choose(adamw, _cfg(), "auto", "cpu")
    assert fn.keywords == {"weight_decay": 0.01, "fused": True} and sec["fused"] and sec["name"] == "AdamW"
    fn, sec = choose(adamw, _cfg(), "auto", "gpu")  # not measured on a GPU here: torch's default, and why
    assert fn is adamw and not sec["fused"] and "not measured" in sec["why"]
    fn, sec = choose(adamw, _cfg(), True, "gpu")
    assert fn.keywords["fused"] is True and sec["fused"]
    for off in (False, None):  # null: no preference, torch's default
        fn, sec = choose(adamw, _cfg(), off, "cpu")
        assert fn is adamw and not sec["fused"]
    explicit = functools.partial(torch.optim.AdamW, foreach=True)
    fn, sec = choose(explicit, _cfg(foreach=True), "auto", "cpu")  # the optimizer's own setting wins
    assert fn is explicit and not sec["fused"] and "foreach" in sec["why"]
    rms = functools.partial(torch.optim.RMSprop, lr=0.01)  # no fused kernel: torch's default, no error
    fn, sec = choose(rms, _cfg(_target_="torch.optim.RMSprop"), "auto", "cpu")
    assert fn is rms and not sec["fused"] and "no fused" in sec["why"]
    # the partial builds a working optimizer on parameter groups, as configure_optimizers calls it
    w = torch.nn.Parameter(torch.ones(3))
    opt = choose(adamw, _cfg(), "auto", "cpu")[0]([{"params": [w], "lr": 0.1}])
    w.grad = torch.ones(3)
    opt.step()
    assert opt.defaults["fused"] and torch.all(w < 1)


def test_a_run_records_the_kernel_and_both_kernels_train_alike(tmp_path: Path) -> None:
    """The fast default config (digits, 2 steps) with each kernel: results.json says which ran (the default is
    torch's implementation), and over 2 steps the metrics agree (the kernels differ by rounding only: measured
    equal to the printed digits; the margins allow one test example and float noise)."""
    fused = run_config(["strategy=full", "fused_optimizer=auto"], tmp_path / "fused")
    loop = run_config(["strategy=full"], tmp_path / "loop")
    assert fused["optimizer"]["fused"] and "CPU" in fused["optimizer"]["why"]
    assert not loop["optimizer"]["fused"] and loop["optimizer"]["setting"] is False
    assert "default" in loop["optimizer"]["why"]
    for key in ("test/acc", "val/acc"):
        assert fused["metrics"][key] == pytest.approx(loop["metrics"][key], abs=0.016), key
    assert fused["metrics"]["train/loss"] == pytest.approx(loop["metrics"]["train/loss"], rel=1e-4)
