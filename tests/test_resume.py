"""Progressive unfreezing and exact resume: optimizer groups per step, SIGKILL + resume = same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_config, train_cli

from transferlab.errors import ConfigError

SMALL = [
    "data.image_size=32",
    "data.train_per_class=10",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def test_optimizer_groups_follow_each_unfreeze_step(run_dir):
    """After every epoch the optimizer holds exactly the trainable parameters, each at its LR."""
    import lightning as L

    from transferlab.strategies.unfreeze import ProgressiveUnfreezing

    seen = []

    class Inspect(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):  # runs after the unfreezing callback
            opt = trainer.optimizers[0]
            in_opt = [id(p) for g in opt.param_groups for p in g["params"]]
            trainable = [id(p) for p in pl_module.parameters() if p.requires_grad]
            assert len(in_opt) == len(set(in_opt)) and set(in_opt) == set(trainable)
            seen.append({g["name"]: g["lr"] for g in opt.param_groups})

    import transferlab.strategies.progressive as prog

    original = prog.Progressive.callbacks
    prog.Progressive.callbacks = lambda self: [ProgressiveUnfreezing(self), Inspect()]
    try:
        run_config(
            ["strategy=progressive", "strategy.lr_decay=0.5", "trainer.max_epochs=4", "trainer.limit_train_batches=1"],
            run_dir,
        )
    finally:
        prog.Progressive.callbacks = original
    assert [len(s) for s in seen] == [1, 2, 3, 4]
    head, top, second, third = 1e-3, 1e-4, 5e-5, 2.5e-5
    assert seen[-1] == pytest.approx(
        {"head": head, "backbone.7:blocks.6": top, "backbone.6:blocks.5": second, "backbone.5:blocks.4": third}
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"unfreeze_every": 0}, "unfreeze_every=0"),
        ({"lr_decay": 0}, "lr_decay=0"),
        ({"lr_decay": 1.5}, "lr_decay=1.5"),
        ({"max_groups": 99}, "only 8 layer groups"),
        ({"unit": "batch"}, "unit='batch'"),
    ],
)
def test_progressive_bad_settings(kwargs, match, run_dir):
    overrides = [f"strategy.{k}={v}" for k, v in kwargs.items()]
    with pytest.raises(ConfigError, match=match):
        run_config(["strategy=progressive", *overrides], run_dir)


def kill_after_first_checkpoint(args, run_dir, timeout=600):
    """Start `train.py args` and SIGKILL it as soon as its first checkpoint exists."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job: under DDP also the other rank's process
    proc.wait()
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy",
    [
        ["strategy=progressive", "strategy.warmup_steps=3"],
        ["strategy=partial"],
        ["strategy=progressive", "hardware=ddp_cpu"],
    ],
    ids=["progressive", "partial", "progressive-ddp_cpu"],
)
def test_sigkill_and_resume_gives_the_same_run(strategy, tmp_path):
    args = [*strategy, *SMALL, "trainer.max_epochs=4"]
    if "hardware=ddp_cpu" in args:  # DDP launches processes: the reference run goes through the CLI too
        assert train_cli([*args, f"hydra.run.dir={tmp_path / 'whole'}"], timeout=900).returncode == 0
        whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    else:
        whole = run_config(args, tmp_path / "whole", fast=False)
    assert whole["status"] == "ok"

    killed = tmp_path / "killed"
    assert kill_after_first_checkpoint(args, killed) == -signal.SIGKILL
    import torch

    saved = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] < 3, "the kill must interrupt training, not the test phase"
    assert not (killed / "results.json").exists() or json.loads((killed / "results.json").read_text())["status"] != "ok"
    out = train_cli([*args, f"hydra.run.dir={killed}", "ckpt_path=last"], timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["global_step"] == whole["global_step"]
    for key in [k for k in whole["metrics"] if k.startswith("test/")] + ["train/acc"]:
        assert resumed["metrics"][key] == pytest.approx(whole["metrics"][key], abs=1e-6), key
    if "train/unfrozen_groups" in whole["metrics"]:
        assert resumed["metrics"]["train/unfrozen_groups"] == whole["metrics"]["train/unfrozen_groups"]


def test_resume_from_a_missing_checkpoint(tmp_path):
    out = train_cli(["ckpt_path=last", f"hydra.run.dir={tmp_path}"])
    assert out.returncode == 2 and "no checkpoint at" in out.stderr and "hydra.run.dir=" in out.stderr


@pytest.mark.slow
def test_resume_with_another_strategy_is_refused(tmp_path):
    run_config(["strategy=partial", *SMALL], tmp_path)
    with pytest.raises(ConfigError, match="different run.*strategy"):
        run_config(["strategy=full", *SMALL, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    with pytest.raises(ConfigError, match=r"strategy.lr: checkpoint 0.001 vs this run 0.01"):
        run_config(["strategy=partial", *SMALL, "strategy.lr=0.01", "trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    with pytest.raises(ConfigError, match=r"data.train_per_class: checkpoint 10 vs this run 20"):
        run_config(["strategy=partial", *SMALL, "data.train_per_class=20", "ckpt_path=last"], tmp_path)
    # the budget may change: one more epoch on the same run
    resumed = run_config(["strategy=partial", *SMALL, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path)
    assert resumed["status"] == "ok" and resumed["epochs"] == 2


def test_training_settings_and_their_diff(tmp_path):
    from conftest import compose

    from transferlab.callbacks.resume import stamp_diff, training_settings

    base = training_settings(compose(["strategy=partial"], tmp_path))
    assert {"seed", "strategy", "optimizer", "data"} <= set(base) and "num_workers" not in base["data"]
    other = training_settings(
        compose(["strategy=partial", "strategy.lr=0.5", "seed=3", "trainer.max_epochs=9"], tmp_path)
    )
    assert stamp_diff(base, other) == [
        "seed: checkpoint 0 vs this run 3",
        f"strategy.lr: checkpoint {base['strategy']['lr']!r} vs this run 0.5",
        "data.seed: checkpoint 0 vs this run 3",  # the training subset's draw
    ]  # trainer.* (the budget) is not a training setting
    assert stamp_diff({"strategy": "partial"}, {"strategy": "partial", "settings": other}) == []  # an older stamp
    assert stamp_diff(base, training_settings(compose(["strategy=partial", "data.num_workers=2"], tmp_path))) == []
    assert stamp_diff(base, training_settings(compose(["strategy=partial", "backbone_dropout=all"], tmp_path))) == [
        "backbone_dropout: checkpoint 'after_trainable' vs this run 'all'"  # which parts train in training mode
    ]
    null = training_settings(compose(["strategy=partial", "backbone_dropout=null"], tmp_path))
    assert stamp_diff(base, null) == []  # null means the default


def test_a_settings_stamp_from_before_backbone_dropout_resumes_only_under_the_old_rule(tmp_path):
    """Checkpoints stamped before 2026-12-07 trained under the old dropout rule: resuming them under the new
    default would change which layers drop out mid-run, so it is refused, naming the setting to pass."""
    from conftest import compose

    from transferlab.callbacks.resume import refuse_other_run, training_settings
    from transferlab.errors import ConfigError

    new = training_settings(compose(["strategy=partial"], tmp_path))
    old = {k: v for k, v in new.items() if k != "backbone_dropout"}  # what such a checkpoint holds
    with pytest.raises(
        ConfigError, match="backbone_dropout: checkpoint 'frozen_subtrees' vs this run 'after_trainable'"
    ):
        refuse_other_run({"settings": old}, {"settings": new})
    pinned = training_settings(compose(["strategy=partial", "backbone_dropout=frozen_subtrees"], tmp_path))
    refuse_other_run({"settings": old}, {"settings": pinned})  # the old rule: resumes
    refuse_other_run({}, {"settings": new})  # no settings stamp at all (older still): not compared


@pytest.mark.slow
def test_progressive_under_ddp_cpu(tmp_path):
    out = train_cli(
        ["strategy=progressive", "hardware=ddp_cpu", *SMALL, "trainer.max_epochs=3", f"hydra.run.dir={tmp_path}"],
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "ok" and result["world_size"] == 2
    assert result["metrics"]["train/unfrozen_groups"] == 2.0
