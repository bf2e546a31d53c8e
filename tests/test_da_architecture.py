"""The domain-adaptation architecture: bottleneck head, joint or separate passes, discriminator LR, cached DA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_config

from transferlab.errors import ConfigError
from transferlab.model.head import Head
from transferlab.model.norm import running_stats_kept

DA = ["data=mnist_to_digits", "data.train_per_class=5", "data.batch_size=8", "trainer.limit_train_batches=3"]


def test_head_without_bottleneck_keeps_its_state_dict_keys():
    head = Head(16, 3, dropout=0.1).eval()
    assert list(head.state_dict()) == ["1.weight", "1.bias"] and not head.has_bottleneck
    f = torch.randn(4, 16)
    assert torch.equal(head.embed(f), f) and torch.equal(head(f), head.classify(f))


def test_bottleneck_head_embeds_then_classifies():
    torch.manual_seed(0)
    head = Head(16, 3, bottleneck=8).eval()
    f = torch.randn(5, 16)
    z = head.embed(f)
    assert z.shape == (5, 8) and head.out_features == 8 and (z >= 0).all()  # after the ReLU
    assert torch.allclose(head(f), head.classify(z))
    with pytest.raises(ConfigError, match="head.bottleneck=-1"):
        Head(16, 3, bottleneck=-1)


def test_frozen_backbone_without_bottleneck_is_refused(run_dir):
    with pytest.raises(ConfigError, match="head.bottleneck=256"):
        run_config([*DA, "strategy=feature_extraction", "adaptation=dann"], run_dir)


def test_feature_extraction_with_bottleneck_aligns_on_cached_features(run_dir):
    result = run_config([*DA, "strategy=feature_extraction", "adaptation=dann", "head.bottleneck=32"], run_dir)
    assert result["status"] == "ok" and result["feature_cache"]["used"], result.get("feature_cache")
    assert result["da"]["aligns"] == "bottleneck" and result["da"]["width"] == 32
    assert 0 < result["metrics"]["train/grl_lambda"] < 1 and result["metrics"]["train/domain_acc"] is not None
    assert result["params"]["trainable"] > 32 * 1280  # bottleneck + classifier + discriminator train


def test_partial_dann_uses_the_prefix_cache_with_the_same_metrics(tmp_path):
    args = [*DA, "strategy=partial", "adaptation=dann", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
    cached = run_config([*args, f"cache.dir={tmp_path / 'cache'}"], tmp_path / "a")
    plain = run_config([*args, "cache=off"], tmp_path / "b")
    assert cached["feature_cache"]["used"] and cached["feature_cache"]["prefix_groups"] == 4
    for key in ("test/target_acc", "test/source_acc", "train/loss", "train/dann_loss", "val/target_acc"):
        assert cached["metrics"][key] == pytest.approx(plain["metrics"][key], abs=1e-4), key


def test_joint_forward_and_discriminator_lr(run_dir):
    result = run_config(
        [*DA, "strategy=partial", "adaptation=dann", "da.forward=joint", "da.lr_mult=10", "strategy.lr=0.001"], run_dir
    )
    assert result["status"] == "ok" and result["da"]["forward"] == "joint"
    assert result["metrics"]["lr-AdamW/adaptation"] == pytest.approx(0.01)


def test_bad_da_settings_stop_in_the_validator(run_dir):
    with pytest.raises(ConfigError, match="da.forward='both' must be 'separate' or 'joint'"):
        run_config([*DA, "adaptation=dann", "da.forward=both"], run_dir)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_kept_normalises_alike_and_leaves_the_averages(momentum):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(4, momentum=momentum).train()
    bn(torch.randn(8, 4) * 3 + 1)  # running statistics away from their initial values
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(6, 4, requires_grad=True)
    with running_stats_kept([bn]):
        y = bn(x)
    assert bn.momentum == momentum and all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())
    assert torch.allclose(y, torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, training=True))
    with running_stats_kept([bn], keep=False):  # off: the running averages move as usual
        bn(x)
    assert not torch.equal(bn.running_mean, before["running_mean"]) and bn.num_batches_tracked == 2


def test_source_running_stats_make_the_bottleneck_control_equal_source_only(tmp_path):
    """With the bottleneck, target batches move its BN averages (`both`): the weight-0 control is then not
    source-only (docs/results/da_running_stats.md); with `source` it is, to the last digit."""
    args = [*DA, "strategy=partial", "head.bottleneck=16", f"cache.dir={tmp_path / 'cache'}"]
    control = [*args, "adaptation=dann", "adaptation.weight=0"]
    plain = run_config([*args, "adaptation=none"], tmp_path / "a")
    kept = run_config([*control, "da.running_stats=source"], tmp_path / "b")
    both = run_config(control, tmp_path / "c")
    assert kept["da"]["running_stats"] == "source" and both["da"]["running_stats"] == "both"
    for key in ("test/target_acc", "test/source_acc", "test/target_loss", "val/target_loss"):
        assert kept["metrics"][key] == plain["metrics"][key], key
    assert both["metrics"]["test/target_loss"] != plain["metrics"]["test/target_loss"]


def test_running_stats_need_separate_passes(tmp_path):
    with pytest.raises(ConfigError, match="da.running_stats=source needs separate passes: da.forward=separate"):
        run_config([*DA, "adaptation=dann", "da.forward=joint", "da.running_stats=source"], tmp_path / "a")
    with pytest.raises(ConfigError, match="da.running_stats='all' must be 'both', 'source' or 'target'"):
        run_config([*DA, "adaptation=dann", "da.running_stats=all"], tmp_path / "b")


def test_label_free_validators_are_logged_and_recorded(run_dir):
    result = run_config([*DA, "strategy=partial", "adaptation=dann"], run_dir)
    sel, m = result["selection"], result["metrics"]
    assert set(sel) == {"source_val_acc", "entropy", "info_max", "snd", "oracle"}
    assert not any(sel[k]["needs_target_labels"] for k in ("source_val_acc", "entropy", "info_max", "snd"))
    assert sel["oracle"]["needs_target_labels"] and sel["oracle"]["value"] == m["val/target_acc"]
    assert 0 <= m["val/target_entropy"] <= 2.31 and 0 <= m["val/target_info_max"] <= 2.31  # log 10 = 2.303
    assert sel["snd"]["value"] == m["val/target_snd"] > 0 and sel["entropy"]["better"] == "lower"


def test_single_domain_runs_have_no_selection_section(run_dir):
    result = run_config(["strategy=feature_extraction", "data.train_per_class=5"], run_dir)
    assert result["selection"] is None and "val/target_snd" not in result["metrics"]


def test_a_null_head_dropout_means_none() -> None:
    """`head.dropout=null` (found by the config-space generator: it raised a TypeError inside nn.Dropout)."""
    head = Head(8, 3, dropout=None)
    assert head[-2].p == 0.0 and head(torch.randn(2, 8)).shape == (2, 3)
