"""Inputs that decode "successfully" into garbage are caught before training (data.sanity), high bit depths are
scaled rather than clipped, and integer label columns keep their numeric order."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from transferlab.data import sanity
from transferlab.errors import DataError


class Items(torch.utils.data.Dataset):
    def __init__(self, xs, ys, files=None):
        self.xs, self.ys = xs, ys
        if files is not None:
            self.files = files

    def __len__(self):
        return len(self.xs)

    def __getitem__(self, i):
        return {"inputs": self.xs[i], "labels": torch.tensor(self.ys[i])}


class Data:
    def __init__(self, ds, classes=("a", "b")):
        self.datasets, self.classes, self.seed = {"source/train": ds}, list(classes), 0


def _varied(n):
    return [torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(n)]


def test_ordinary_inputs_pass_and_are_recorded():
    section = sanity.check(Data(Items(_varied(10), [0, 1] * 5)))
    assert section == {"input_check": {"source": {"checked": 10, "distinct": 10, "constant": 0}}}


def test_identical_inputs_are_refused_naming_files():
    same = [torch.ones(3, 4, 4) * torch.arange(4.0)] * 6
    with pytest.raises(DataError, match=r"every source training input is identical \(6 checked, e.g. f0.png"):
        sanity.check(Data(Items(same, [0, 1] * 3, files=[f"f{i}.png" for i in range(6)])))


def test_mostly_blank_inputs_are_refused_and_a_few_are_warned(caplog):
    xs = _varied(10)
    blank = [torch.full((3, 4, 4), float(i)) for i in range(6)] + xs[:4]
    with pytest.raises(DataError, match="6 of 10 source training inputs are constant"):
        sanity.check(Data(Items(blank, [0, 1] * 5)))
    xs[3] = torch.zeros(3, 4, 4)
    with caplog.at_level(logging.WARNING, logger="transferlab"):
        section = sanity.check(Data(Items(xs, [0, 1] * 5, files=[f"f{i}" for i in range(10)])))
    assert "1 source training input(s) are constant" in caplog.text and "f3" in caplog.text
    assert section["input_check"]["source"]["constant"] == 1


def test_a_class_of_one_repeated_input_is_refused():
    xs = _varied(10)
    for i in range(1, 10, 2):  # every example of class b is one input
        xs[i] = xs[1]
    with pytest.raises(DataError, match="class 'b' of the source training data has 5 examples that are all the same"):
        sanity.check(Data(Items(xs, [0, 1] * 5)))


def test_large_sets_are_sampled(monkeypatch):
    monkeypatch.setattr(sanity, "SAMPLE", 8)
    section = sanity.check(Data(Items(_varied(30), [0, 1] * 15)))
    assert section["input_check"]["source"]["checked"] == 8


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """PIL's convert clips a 16-bit gray PNG at 255 (a white image); `to_mode` scales it like its 8-bit twin."""
    from PIL import Image

    from transferlab.data.folder import to_mode

    ramp8 = np.tile(np.linspace(0, 255, 16).round().astype(np.uint8), (16, 1))
    Image.fromarray(ramp8.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit PNG, same picture
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
        clipped = np.asarray(im.convert("L"))
        decoded = np.asarray(to_mode(im, "L"))
        rgb = np.asarray(to_mode(im, "RGB"))
    assert (clipped == 255).mean() > 0.9  # what decoding used to give
    np.testing.assert_array_equal(decoded, ramp8)
    assert rgb.shape == (16, 16, 3) and (rgb[..., 0] == ramp8).all()
    floats = Image.fromarray(ramp8.astype(np.float32) / 255.0, "F")
    np.testing.assert_array_equal(np.asarray(to_mode(floats, "L")), ramp8)


def test_integer_labels_keep_numeric_order_and_gaps_are_said(caplog):
    from transferlab.data.text import _from_columns

    with caplog.at_level(logging.WARNING):
        src = _from_columns("d", ["x"] * 5, [0, 1, 10, 2, 10], "'d.csv'")
    assert src.classes == ["0", "1", "2", "10"] and src.labels.tolist() == [0, 1, 3, 2, 3]
    assert "have no examples of [3, 4, 5, 6, 7, 8, 9]" in caplog.text
    assert _from_columns("d", ["x"] * 2, ["pos", "neg"], "w").classes == ["neg", "pos"]
