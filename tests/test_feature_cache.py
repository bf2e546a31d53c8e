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


@pytest.mark.parametrize("strategy", ["full", "progressive"])  # progressive starts frozen, then unfreezes
def test_not_used_when_the_backbone_trains(strategy, tmp_path):
    result = run_config(
        [*ARGS, f"strategy={strategy}", "trainer.max_epochs=1", f"cache.dir={tmp_path}"], tmp_path / "run"
    )
    assert result["feature_cache"] == {"used": False, "reason": "the backbone has trainable parameters"}


def test_partial_caches_its_frozen_prefix_with_the_same_metrics(tmp_path):
    """partial (top 2 of 8 groups train): the stem + blocks 0-5 outputs are cached, blocks.6 + head train on them."""
    args = [*ARGS, "strategy=partial"]
    cache = f"cache.dir={tmp_path / 'cache'}"
    off = run_config([*args, "cache=off"], tmp_path / "off")
    first = run_config([*args, cache], tmp_path / "first")
    second = run_config([*args, cache, "seed=1"], tmp_path / "second")
    fc = first["feature_cache"]
    assert fc["used"] and fc["prefix_groups"] == 6 and fc["misses"] == 1 and fc["forwards"] == 1797
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
