"""Reliability: nothing already written is lost (run dirs, resumes, checkpoints), exit codes a scheduler can
trust, zero-step runs said as such, export parity judged on the logits' scale, a folder's own splits kept."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_config, train_cli

from transferlab.errors import ConfigError


def _listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


# -- the run dir --------------------------------------------------------------------------------------------
def test_a_finished_run_dir_is_never_overwritten(run_dir):
    first = run_config([], run_dir)
    before = _listing(run_dir)
    with pytest.raises(ConfigError, match=r"already holds a run .*status ok.*ckpt_path=last.*overwrite=true"):
        run_config(["seed=1"], run_dir)
    assert _listing(run_dir) == before  # results.json, metrics, checkpoints, as they were

    second = run_config(["seed=1", "overwrite=true"], run_dir)
    assert second["status"] == "ok" and second["seed"] == 1 and first["seed"] == 0
    kept = run_dir / "replaced" / "1"
    assert json.loads((kept / "results.json").read_text())["seed"] == 0  # the earlier run, set aside whole
    assert {k for k in before} <= {k.removeprefix("replaced/1/") for k in _listing(run_dir) if k.startswith("replaced")}
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if "-v1" in p.name]  # no last-v1.ckpt


def test_the_cli_refuses_before_hydra_writes(run_dir):
    from conftest import FAST

    ok = train_cli([*FAST, f"hydra.run.dir={run_dir}"])
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = _listing(run_dir)
    again = train_cli([*FAST, "seed=3", f"hydra.run.dir={run_dir}"])
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    assert _listing(run_dir) == before  # .hydra/config.yaml too


# -- resume ---------------------------------------------------------------------------------------------------
BUDGET = ["strategy=partial", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"]


def test_resume_appends_to_the_metric_history(tmp_path):
    whole = tmp_path / "whole"
    run_config([*BUDGET, "trainer.max_epochs=3"], whole)
    part = tmp_path / "part"
    run_config([*BUDGET, "trainer.max_epochs=2"], part)
    resumed = run_config([*BUDGET, "trainer.max_epochs=3", "ckpt_path=last"], part)
    assert resumed["status"] == "ok"
    key = lambda rows: sorted((r["step"], r.get("epoch"), tuple(k for k in r if r[k])) for r in rows)
    assert key(_csv_rows(part)) == key(_csv_rows(whole))  # epochs 0-2 all there, none twice


def test_a_corrupt_checkpoint_is_refused_naming_the_intact_one(run_dir):
    run_config([*BUDGET, "trainer.max_epochs=2", "callbacks.checkpoint.save_top_k=-1"], run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # torn
    before = _listing(run_dir)
    with pytest.raises(ConfigError, match=r"can't be loaded .*Intact checkpoints in that folder: .*epoch=1"):
        run_config([*BUDGET, "trainer.max_epochs=3", "ckpt_path=last"], run_dir)
    after = _listing(run_dir)
    failed = json.loads(after.pop("results.resume-failed.json"))
    assert after == before  # results.json (ok) and metrics.csv untouched
    assert failed["status"] == "failed" and failed["failure"]["stage"] == "validate"


def test_a_checkpoint_of_another_run_is_refused_before_anything_heavy(run_dir):
    run_config([*BUDGET, "strategy=feature_extraction"], run_dir)
    with pytest.raises(ConfigError, match=r"written by a different run \(strategy: checkpoint 'FeatureExtraction'"):
        run_config([*BUDGET, "trainer.max_epochs=2", "ckpt_path=last"], run_dir)
    failed = json.loads((run_dir / "results.resume-failed.json").read_text())
    assert failed["failure"]["stage"] == "data" and "backbone" not in failed  # no weights loaded, no cache built
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"


# -- zero steps, signals --------------------------------------------------------------------------------------
def test_a_run_that_trained_zero_steps_says_so(run_dir):
    result = run_config(["trainer.max_steps=0", "strategy=partial"], run_dir)
    assert result["status"] == "untrained" and result["global_step"] == 0
    assert "0 optimizer steps" in result["note"] and "trainer.max_steps=0" in result["note"]


@pytest.mark.slow
def test_sigterm_exits_nonzero_and_records_the_interruption(run_dir):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "strategy=full", "trainer.max_epochs=500", "data.image_size=32",
         "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGTERM)
    rc = proc.wait(timeout=120)
    result = json.loads((run_dir / "results.json").read_text())
    assert rc == 143, rc  # 128 + SIGTERM: `&&` chains and job arrays see a failure
    assert result["status"] == "failed" and result["failure"]["reason"] == "interrupted"


@pytest.mark.slow
def test_ddp_that_cannot_rendezvous_fails_before_anything_loads(run_dir):
    """`unshare -n`: a network namespace whose loopback is down (the case that waited 30 minutes, then 120 s)."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n (a private network namespace) is not permitted here")
    start = time.time()
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, str(ROOT / "train.py"), "hardware=ddp_cpu", "trainer.max_epochs=1",
         "hardware.strategy.timeout.seconds=10", "data.image_size=32", "trainer.enable_progress_bar=false",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and time.time() - start < 60, proc.stderr[-2000:]  # the timeout is 10 s: its bound
    assert "could not reach each other" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("frame #") < 40  # not a flood of C++ frames
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "failed" and result["failure"] == {"stage": "validate", "reason": "rendezvous"}
    assert not {"data", "backbone", "fit"} & set(result.get("stage_s") or {})  # nothing loaded


def test_a_rendezvous_that_fails_in_fit_still_gives_one_message():
    """Across nodes (MASTER_ADDR another machine) the early probe cannot answer: the processes' own failure after
    hardware.strategy.timeout becomes the same one message (torch raises DistNetworkError / DistStoreError)."""
    from transferlab.config.machine import check_rendezvous, loopback_problem
    from transferlab.errors import TrainingError
    from transferlab.run.preflight import explain

    class DistNetworkError(RuntimeError):
        pass

    e = explain(
        DistNetworkError("The client socket has failed to connect to any network address of (10.0.0.1, 29500).")
    )
    assert isinstance(e, TrainingError) and e.details == {"reason": "rendezvous"} and "could not reach" in str(e)
    assert loopback_problem() is None  # this machine's loopback is up
    check_rendezvous({"hardware": {"devices": 2}})  # so the probe passes
    check_rendezvous({"hardware": {"devices": 2, "num_nodes": 2}})  # across nodes: not probed


def test_the_rendezvous_probe_counts_devices_as_lightning_does(monkeypatch):
    """Every form of several processes is probed (a count, a digit string, ids as a list or a string); one process
    is not; the one-process fix names the run's own kind of hardware."""
    from transferlab.config import machine
    from transferlab.errors import TrainingError

    monkeypatch.setattr(machine, "loopback_problem", lambda host="127.0.0.1": "ConnectionRefusedError: refused")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for devices in (2, "2", [0, 1], "0,1", "0, 1,"):
        with pytest.raises(TrainingError, match=r"train in one process: hardware=cpu \(or hardware.devices=1\)"):
            machine.check_rendezvous({"hardware": {"accelerator": "cpu", "devices": devices}})
    with pytest.raises(TrainingError, match=r"train in one process: hardware=gpu \(or hardware.devices=1\)"):
        machine.check_rendezvous({"hardware": {"accelerator": "gpu", "devices": "0,1"}})
    for devices in (1, "1", "auto", [0]):
        machine.check_rendezvous({"hardware": {"accelerator": "cpu", "devices": devices}})
    monkeypatch.setattr(machine, "_cuda", lambda: 2)  # accelerator auto on a box with 2 GPUs: -1/auto are both
    for devices in (-1, "auto"):
        with pytest.raises(TrainingError, match=r"hardware=gpu \(or hardware.devices=1\)"):
            machine.check_rendezvous({"hardware": {"accelerator": "auto", "devices": devices}})


# -- export parity ------------------------------------------------------------------------------------------------
def test_export_parity_is_relative_to_the_logits_scale():
    from transferlab.export import _parity, flips, mismatch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g) * 40  # logits of size ~100
    ref = lambda b: x[b]
    close = lambda b: x[b] + 1.13e-4  # (the partial run's ONNX figure: within 1e-4 relative)
    batches = [(torch.arange(32),), (torch.arange(32, 64),)]
    info = _parity(ref, close, batches)
    assert info["max_abs_diff"] == pytest.approx(1.13e-4, rel=0.05) and info["rel_diff"] < 1e-5
    assert flips(info, 1e-4) == 0 and info["n_compared"] == 64

    def flipped(b):
        out = x[b].clone()
        out[0] = out[0].flip(0)  # a real change of prediction (margins of ~40)
        return out

    bad = _parity(ref, flipped, batches)
    assert flips(bad, 1e-4) >= 1 and "predictions change" in mismatch(bad, 1e-4)
    assert "logits differ by up to" in mismatch(bad, 1e-4)


# -- a folder's own splits ----------------------------------------------------------------------------------------
def _folder(root: Path, split: str | None, n: int) -> list[Path]:
    from PIL import Image

    out = []
    for c, base in (("a", 40), ("b", 180)):
        for i in range(n):
            p = (root / split if split else root) / c / f"{split or 'x'}{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            ramp = np.add.outer(np.arange(8), np.arange(8)) * 2  # not constant (data.sanity refuses blank images)
            Image.fromarray((base + i + ramp).astype(np.uint8), "L").save(p)
            out.append(p)
    return out


@pytest.mark.parametrize("given", [("train", "test"), ("train", "val"), ("train", "val", "test"), ("train",)])
def test_a_folders_own_splits_are_kept(tmp_path, given):
    from transferlab.data.folder import ImageFolderData

    files = {s: set(_folder(tmp_path / "imgs", s, 20 if s == "train" else 6)) for s in given}
    data = ImageFolderData(root=str(tmp_path / "imgs")).prepare()
    dom, names = data.domains["source"], data.files["source"]
    split = {s: {names[i] for i in getattr(dom, s)} for s in ("train", "val", "test")}
    for s in ("val", "test"):
        if s in given:
            assert split[s] == files[s]  # the user's split, as given
        else:
            assert split[s] and split[s] <= files["train"]  # carved out of train/ alone
    assert split["train"] <= files["train"] and not (split["train"] & (split["val"] | split["test"]))
    assert np.array_equal(np.sort(dom.train), np.unique(dom.train))
