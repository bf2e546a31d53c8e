"""Feature cache: same metrics as uncached, one pass per sample, keyed, checksummed, fault-tolerant."""

from __future__ import annotations

import os

import pytest

from conftest import run_config

ARGS = ["data.train_per_class=5", "trainer.max_epochs=2", "trainer.limit_train_batches=1.0",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=1.0", "logger=none"]


def metrics(result):
    return {k: v for k, v in result["metrics"].items() if k.startswith(("test/", "val/"))}


def test_cached_equals_uncached_and_second_run_hits(tmp_path):
    cache = f"cache.dir={tmp_path / 'cache'}"
    off = run_config([*ARGS, "cache=off"], tmp_path / "off")
    first = run_config([*ARGS, cache], tmp_path / "first")
    second = run_config([*ARGS, cache], tmp_path / "second")
    assert "feature_cache" not in off
    assert first["feature_cache"]["misses"] == 3 and first["feature_cache"]["hits"] == 0
    assert second["feature_cache"]["hits"] == 3 and second["feature_cache"]["forwards"] == 0
    from transferlab.data.sources import sklearn_digits
    from transferlab.data.splits import stratified_split

    _, val, test = stratified_split(sklearn_digits().labels, (0.15, 0.3), seed=0)
    n_samples = first["train_size"] + len(val) + len(test)
    assert first["feature_cache"]["forwards"] == n_samples  # one backbone pass per sample
    for name, value in metrics(off).items():
        assert first["metrics"][name] == pytest.approx(value, abs=1e-4), name
        assert second["metrics"][name] == pytest.approx(first["metrics"][name], abs=1e-6), name


def test_key_changes_with_what_determines_the_features(tmp_path):
    cache = f"cache.dir={tmp_path / 'cache'}"
    run_config([*ARGS, cache], tmp_path / "a")
    other_size = run_config([*ARGS, cache, "data.image_size=24"], tmp_path / "b")
    other_seed = run_config([*ARGS, cache, "seed=1"], tmp_path / "c")
    assert other_size["feature_cache"]["hits"] == 0
    # seed 1 draws another training subset (miss) but shares the fixed val/test splits (hits)
    assert other_seed["feature_cache"]["hits"] == 2 and other_seed["feature_cache"]["misses"] == 1


def test_not_used_when_the_backbone_trains(tmp_path):
    result = run_config([*ARGS, "strategy=partial", f"cache.dir={tmp_path}"], tmp_path / "run")
    assert result["feature_cache"] == {"used": False, "reason": "the backbone has trainable parameters"}


def test_corrupt_file_is_discarded_and_recomputed(tmp_path, caplog):
    cache = tmp_path / "cache"
    good = run_config([*ARGS, f"cache.dir={cache}"], tmp_path / "a")
    files = sorted((cache).glob("*.safetensors"))
    assert len(files) == 3
    files[0].write_bytes(files[0].read_bytes()[:-100])  # truncated
    data = bytearray(files[1].read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the features
    files[1].write_bytes(bytes(data))
    again = run_config([*ARGS, f"cache.dir={cache}"], tmp_path / "b")
    assert again["feature_cache"]["corrupt"] == 2 and again["feature_cache"]["hits"] == 1
    assert "corrupt" in caplog.text
    assert metrics(again) == pytest.approx(metrics(good), abs=1e-6)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only dirs")
def test_read_only_cache_dir_falls_back(tmp_path):
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(0o500)
    result = run_config([*ARGS, f"cache.dir={cache}"], tmp_path / "a")
    assert result["status"] == "ok" and result["feature_cache"]["persisted"] is False


def test_unwritable_cache_dir_falls_back(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_config([*ARGS, f"cache.dir={blocker / 'sub'}"], tmp_path / "a")
    assert result["status"] == "ok" and result["feature_cache"]["persisted"] is False
    assert "not writable" in caplog.text
