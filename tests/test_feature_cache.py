"""Feature cache: same metrics as uncached, one pass per sample, keyed, checksummed, fault-tolerant."""

from __future__ import annotations

import pytest
from conftest import run_config

ARGS = [
    "data.train_per_class=5",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=1.0",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1.0",
    "logger=none",
]


def metrics(result):
    return {k: v for k, v in result["metrics"].items() if k.startswith(("test/", "val/"))}


def test_cached_equals_uncached_and_second_run_hits(tmp_path):
    cache = f"cache.dir={tmp_path / 'cache'}"
    off = run_config([*ARGS, "cache=off"], tmp_path / "off")
    first = run_config([*ARGS, cache], tmp_path / "first")
    second = run_config([*ARGS, cache], tmp_path / "second")
    assert "feature_cache" not in off
    assert first["feature_cache"]["misses"] == 1 and first["feature_cache"]["hits"] == 0
    assert second["feature_cache"]["hits"] == 1 and second["feature_cache"]["forwards"] == 0
    assert first["feature_cache"]["forwards"] == 1797  # one backbone pass per image of the domain
    for name, value in metrics(off).items():
        assert first["metrics"][name] == pytest.approx(value, abs=1e-4), name
        assert second["metrics"][name] == pytest.approx(first["metrics"][name], abs=1e-6), name


def test_key_changes_with_what_determines_the_features(tmp_path):
    cache = f"cache.dir={tmp_path / 'cache'}"
    run_config([*ARGS, cache], tmp_path / "a")
    other_size = run_config([*ARGS, cache, "data.image_size=24"], tmp_path / "b")
    other_seed = run_config([*ARGS, cache, "seed=1"], tmp_path / "c")
    assert other_size["feature_cache"]["hits"] == 0
    # seed 1 draws another training subset from the same domain: its features are already there
    assert other_seed["feature_cache"]["hits"] == 1 and other_seed["feature_cache"]["forwards"] == 0
    # the same weights computing other features (max instead of average pooling) must not share entries
    max_pool = run_config([*ARGS, cache, "+backbone.model_kwargs={global_pool: max}"], tmp_path / "d")
    assert max_pool["feature_cache"]["hits"] == 0 and max_pool["feature_cache"]["forwards"] == 1797


def test_structure_hash_tells_apart_what_the_weights_do_not():
    import torch
    from torch import nn

    from transferlab.model.features import structure_hash, weights_hash

    def net(pool):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), pool, nn.Flatten())

    avg, avg_again, mx = net(nn.AdaptiveAvgPool2d(1)), net(nn.AdaptiveAvgPool2d(1)), net(nn.AdaptiveMaxPool2d(1))
    assert weights_hash(avg) == weights_hash(mx)  # what the key had before: the same for both
    assert structure_hash(avg) == structure_hash(avg_again) != structure_hash(mx)
    # a traced graph cut at another node (an ONNX backbone's `backbone.output`): same parameters, other code
    whole, cut = torch.fx.symbolic_trace(avg_again), torch.fx.symbolic_trace(avg_again[:2])
    cut.add_module("2", nn.AdaptiveAvgPool2d(1)), cut.add_module("3", nn.Flatten())  # same modules, other graph
    assert weights_hash(whole) == weights_hash(cut) and structure_hash(whole) != structure_hash(cut)


def test_not_used_when_the_backbone_trains(tmp_path):
    result = run_config([*ARGS, "strategy=full", "trainer.max_epochs=1", f"cache.dir={tmp_path}"], tmp_path / "run")
    assert result["feature_cache"] == {"used": False, "reason": "the backbone has trainable parameters"}


def test_progressive_caches_what_its_schedule_never_reaches(tmp_path):
    """Progressive unfreezes one group per epoch from the top: within 3 epochs it reaches 2 of the 8 groups, so
    the stem + blocks 0-5 stay frozen for the whole run and their outputs are cached; metrics as uncached."""
    args = [*ARGS, "strategy=progressive", "trainer.max_epochs=3"]
    cache = f"cache.dir={tmp_path / 'cache'}"
    off = run_config([*args, "cache=off"], tmp_path / "off")
    on = run_config([*args, cache], tmp_path / "on")
    fc = on["feature_cache"]
    assert fc["used"] and fc["prefix_groups"] == 6 and fc["forwards"] == 1797
    assert on["forwards"]["backbone"] == 0 and on["forwards"]["suffix"] > 0 < off["forwards"]["backbone"]
    assert on["params"] == off["params"]
    for name, value in metrics(off).items():
        assert on["metrics"][name] == pytest.approx(value, abs=1e-4), name
    # one epoch: the schedule never starts, the head trains on the whole backbone's cached features
    one = run_config([*args, cache, "trainer.max_epochs=1"], tmp_path / "one")
    assert one["feature_cache"]["used"] and one["feature_cache"]["prefix_groups"] is None
    # a budget long enough to unfreeze every group: nothing stays frozen, nothing is cached
    every = run_config([*args, cache, "trainer.max_epochs=9", "trainer.limit_train_batches=1"], tmp_path / "every")
    assert every["feature_cache"]["used"] is False and "every layer group" in every["feature_cache"]["reason"]


def test_partial_caches_its_frozen_prefix_with_the_same_metrics(tmp_path):
    """partial (top 4 of 8 groups train): the stem + blocks 0-2 outputs are cached, blocks 3-6 + head train on them."""
    args = [*ARGS, "strategy=partial"]
    cache = f"cache.dir={tmp_path / 'cache'}"
    off = run_config([*args, "cache=off"], tmp_path / "off")
    first = run_config([*args, cache], tmp_path / "first")
    second = run_config([*args, cache, "seed=1"], tmp_path / "second")
    fc = first["feature_cache"]
    assert fc["used"] and fc["prefix_groups"] == 4 and fc["misses"] == 1 and fc["forwards"] == 1797
    assert second["feature_cache"]["hits"] == 1 and second["feature_cache"]["forwards"] == 0
    assert first["params"] == off["params"]  # same trainable suffix, nothing registered twice
    for name, value in metrics(off).items():
        assert first["metrics"][name] == pytest.approx(value, abs=1e-4), name
    # another cut is another key
    three = run_config([*args, cache, "strategy.trainable_groups=3"], tmp_path / "three")
    assert three["feature_cache"]["prefix_groups"] == 5 and three["feature_cache"]["misses"] == 1


def test_partial_on_an_architecture_without_a_known_cut(tmp_path):
    result = run_config(
        [
            *ARGS,
            "strategy=partial",
            "backbone=timm",
            "backbone.model_name=convnext_atto",
            "backbone.pretrained=false",
            f"cache.dir={tmp_path}",
        ],
        tmp_path / "run",
    )
    assert result["feature_cache"]["used"] is False
    assert "is not a prefix the cache can cut" in result["feature_cache"]["reason"]


def test_corrupt_file_is_discarded_and_recomputed(tmp_path, caplog):
    cache = tmp_path / "cache"
    good = run_config([*ARGS, f"cache.dir={cache}"], tmp_path / "a")
    (file,) = cache.glob("*.safetensors")
    intact = file.read_bytes()
    for i, damaged in enumerate((intact[:-100], intact[:-5] + bytes([intact[-5] ^ 0xFF]) + intact[-4:])):
        file.write_bytes(damaged)  # torn; one flipped byte
        again = run_config([*ARGS, f"cache.dir={cache}"], tmp_path / f"b{i}")
        assert again["feature_cache"]["corrupt"] == 1 and again["feature_cache"]["misses"] == 1
        assert metrics(again) == pytest.approx(metrics(good), abs=1e-6)
        assert file.read_bytes() == intact  # recomputed and rewritten
    assert "corrupt" in caplog.text


def test_unwritable_cache_dir_falls_back(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_config([*ARGS, f"cache.dir={blocker / 'sub'}"], tmp_path / "a")
    assert result["status"] == "ok" and result["feature_cache"]["persisted"] is False
    assert "not writable" in caplog.text


def test_lora_caches_the_frozen_part_below_its_first_adapted_layer(tmp_path):
    """LoRA on the top stages only (a regex, peft's semantics): the 6 groups below its first adapted layer are frozen
    for the whole run, their outputs are cached, and the metrics (merged model too) are the uncached run's."""
    top = ["strategy=lora", r"strategy.target_modules='blocks\.[56]\..*conv_pw'"]
    cache = f"cache.dir={tmp_path / 'cache'}"
    off = run_config([*ARGS, *top, "cache=off"], tmp_path / "off")
    on = run_config([*ARGS, *top, cache], tmp_path / "on")
    assert on["feature_cache"]["used"] and on["feature_cache"]["prefix_groups"] == 6
    assert on["params"] == off["params"] and on["adapter"]["merged"]["within_tol"]
    for name, value in metrics(off).items():
        assert on["metrics"][name] == pytest.approx(value, abs=1e-4), name
    # the default targets start at blocks.0: only the stem is below them, and its outputs outnumber its inputs
    default = run_config([*ARGS, "strategy=lora", "trainer.max_epochs=1", cache], tmp_path / "default")
    assert default["feature_cache"]["used"] is False
    assert "more values per image" in default["feature_cache"]["reason"]


def test_mixed_precision_caches_what_the_run_computes(tmp_path):
    """Under bf16-mixed the uncached run's frozen forward runs under autocast: the cache computes the same
    (before, float32 features moved test accuracy by 1.9 points at 32 px), kept apart from float32 ones;
    a precision that casts the weights (bf16-true) is declined with its reason."""
    cache = f"cache.dir={tmp_path / 'cache'}"
    mixed = [*ARGS, "hardware.precision=bf16-mixed"]
    off = run_config([*mixed, "cache=off"], tmp_path / "off")
    on = run_config([*mixed, cache], tmp_path / "on")
    assert on["feature_cache"]["used"] and on["feature_cache"]["misses"] == 1
    for name, value in metrics(off).items():
        assert on["metrics"][name] == pytest.approx(value, abs=1e-4), name
    assert run_config([*ARGS, cache], tmp_path / "fp32")["feature_cache"]["hits"] == 0  # float32: other entries
    cast = run_config([*ARGS, "hardware.precision=bf16-true", "trainer.max_epochs=1"], tmp_path / "cast")
    assert not cast["feature_cache"]["used"] and "precision=bf16-true" in cast["feature_cache"]["reason"]
