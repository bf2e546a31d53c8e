"""Label-free validators: hand-computed values, SND against pytorch-adapt's formula, directions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transferlab.adaptation.selection import VALIDATORS, entropy, info_max, oriented, snd

K = 10


def confident(labels: torch.Tensor, scale: float = 8.0, noise: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Logits `(N, K)` peaked on `labels` (a clustered, confident prediction set)."""
    g = torch.Generator().manual_seed(seed)
    return scale * F.one_hot(labels, K).float() + noise * torch.randn(len(labels), K, generator=g)


def snd_pytorch_adapt(logits: torch.Tensor, T: float = 0.05) -> torch.Tensor:
    """pytorch-adapt 0.0.83 `SNDValidator(layer="preds")` step by step: cosine similarity of the softmax
    rows, `mask_out_self`, softmax(sim / T), `entropy_after_softmax` with eps = finfo.tiny, mean."""
    preds = logits.softmax(dim=1)
    emb = preds / preds.norm(dim=1, keepdim=True)
    sim = emb @ emb.T
    n = len(sim)
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[torch.arange(n), torch.arange(n)] = False
    sim = F.softmax(sim[mask].view(n, n - 1) / T, dim=1)
    return (-(sim * torch.log(sim + torch.finfo(sim.dtype).tiny)).sum(dim=1)).mean()


def test_uniform_predictions():
    logits = torch.zeros(6, K)
    assert entropy(logits).item() == pytest.approx(math.log(K), abs=1e-6)
    assert info_max(logits).item() == pytest.approx(0.0, abs=1e-6)
    # all rows identical: every neighbour equally similar -> uniform over the N - 1 others
    assert snd(logits).item() == pytest.approx(math.log(5), abs=1e-5)


def test_one_hot_balanced_predictions():
    logits = 1e4 * torch.eye(K)  # softmax exactly one-hot (probabilities underflow to 0)
    assert entropy(logits).item() == pytest.approx(0.0, abs=1e-6)
    assert info_max(logits).item() == pytest.approx(math.log(K), abs=1e-5)
    # orthogonal rows: no neighbour is closer than another -> log(N - 1)
    assert snd(logits).item() == pytest.approx(math.log(K - 1), abs=1e-5)


def test_hand_computed_two_class_values():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    h = lambda q: -(q * q.log()).sum(-1)
    assert entropy(p.log()).item() == pytest.approx(h(p).mean().item(), abs=1e-6)
    assert entropy(p.log()).item() == pytest.approx(0.5 * (0.325083 + 0.500402), abs=1e-5)
    assert info_max(p.log()).item() == pytest.approx(h(p.mean(0)).item() - h(p).mean().item(), abs=1e-6)
    assert snd(p.log()).item() == pytest.approx(0.0, abs=1e-6)  # one neighbour each: a point mass


def test_collapsed_confident_predictions_score_low_on_info_max():
    collapsed = confident(torch.zeros(40, dtype=torch.long))  # confident, every target in class 0
    balanced = confident(torch.arange(40) % K)
    assert entropy(collapsed).item() < 0.1 and entropy(balanced).item() < 0.1  # entropy can't tell them apart
    assert info_max(collapsed).item() < 0.01  # IM sees the collapse: confident but uninformative
    assert info_max(balanced).item() > math.log(K) - 0.1


@pytest.mark.parametrize("n,k,seed", [(50, 10, 0), (300, 5, 1), (1100, 10, 2)])
def test_snd_matches_pytorch_adapt_formula(n, k, seed):
    logits = 3 * torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(snd(logits, chunk_size=256), snd_pytorch_adapt(logits), atol=1e-5, rtol=1e-5)


def test_snd_chunking_does_not_change_the_value():
    logits = torch.randn(97, K, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(snd(logits, chunk_size=10), snd(logits, chunk_size=1000), atol=1e-6, rtol=0)


def test_low_precision_logits_are_upcast():
    logits = confident(torch.arange(30) % K, seed=4)
    out = entropy(logits.bfloat16())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(entropy(logits).item(), abs=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_clustered_confident_beats_random(name, seed):
    fn, direction, needs = VALIDATORS[name]
    assert direction in ("higher", "lower") and needs == "logits"
    clustered = confident(torch.arange(200) % K, seed=seed)  # (200, K)
    scattered = 8.0 * torch.randn(200, K, generator=torch.Generator().manual_seed(100 + seed))  # same scale
    good, bad = fn(clustered).item(), fn(scattered).item()
    assert oriented(name, good) > oriented(name, bad), (name, good, bad)


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.zeros(4), r"shape \(N, K\)"),
        (torch.zeros(4, 1), "2 classes"),
        (torch.zeros(4, K, dtype=torch.long), "float logits"),
    ],
)
def test_bad_inputs_say_what_to_pass(bad, match):
    for fn, _, _ in VALIDATORS.values():
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_snd_needs_two_examples_and_a_positive_temperature():
    with pytest.raises(ValueError, match="at least 2 target examples"):
        snd(torch.zeros(1, K))
    with pytest.raises(ValueError, match="temperature"):
        snd(torch.zeros(4, K), temperature=0)
    with pytest.raises(KeyError, match="choose one of"):
        oriented("dev", 1.0)


@pytest.mark.parametrize(
    "metric, way",
    [
        ("val/target_entropy", "lower"),
        ("val/target_snd", "higher"),
        ("val/target_info_max", "higher"),
        ("val/acc", "higher"),
        ("val/source_acc", "higher"),
        ("val/loss", "lower"),
        ("val/target_loss", "lower"),
        ("val/perplexity", "lower"),
        ("val/something", None),
    ],
)
def test_which_way_a_metric_improves(metric, way):
    from transferlab.adaptation.selection import better

    assert better(metric) == way


def test_search_direction_follows_the_objective_and_refuses_a_contradiction():
    from transferlab.adaptation.selection import search_direction
    from transferlab.errors import ConfigError

    assert search_direction("val/target_entropy", None) == "minimize"
    assert search_direction("val/target_entropy", "auto") == "minimize"
    assert search_direction("val/acc", "auto") == "maximize"
    assert search_direction("val/acc", "maximize") == "maximize"
    assert search_direction("val/something", "minimize") == "minimize"  # unknown metric: the user's word
    with pytest.raises(ConfigError, match=r"contradicts objective 'val/target_entropy'.*search.direction=minimize"):
        search_direction("val/target_entropy", "maximize")
    with pytest.raises(ConfigError, match="can't tell whether objective 'val/something'"):
        search_direction("val/something", "auto")
    with pytest.raises(ConfigError, match="must be 'auto', 'maximize' or 'minimize'"):
        search_direction("val/acc", "max")


def test_search_refuses_a_contradicting_direction_before_any_trial(tmp_path, capsys):
    from conftest import ROOT

    from transferlab import search

    args = ["--config-dir", str(ROOT / "sweeps"), "--config-name", "optuna_partial"]
    args += ["objective=val/loss", "search.direction=maximize", f"hydra.sweep.dir={tmp_path / 'study'}"]
    assert search.main(args) == 2
    assert "use search.direction=minimize" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()  # refused before the study dir or a trial
