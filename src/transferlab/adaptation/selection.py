"""Label-free model-selection validators for unsupervised domain adaptation.

Unsupervised DA has no target labels, so hyper-parameters and checkpoints must be picked by a
score computed from unlabelled target predictions alone (Saito et al. 2021; DomainBed, Gulrajani &
Lopez-Paz 2021, show the selection rule moves results as much as the method). Each validator is a
pure function of the target logits `(N, K)` returning a 0-dim float32 tensor; `VALIDATORS` says
whether higher or lower is better and what it needs. Logits are upcast to float32 (AMP-safe).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_logits(logits: torch.Tensor, what: str, min_rows: int = 1) -> torch.Tensor:
    """`(N, K)` float logits with N >= min_rows and K >= 2, upcast to float32."""
    if not torch.is_tensor(logits) or logits.dim() != 2:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(
            f"{what} takes target logits of shape (N, K), got {shape}. Pass the classifier's "
            "outputs on the unlabelled target set, stacked over batches (torch.cat)."
        )
    n, k = logits.shape
    if n < min_rows or k < 2:
        raise ValueError(
            f"{what} needs at least {min_rows} target examples and 2 classes, got logits {(n, k)}. "
            "Score on the whole target split rather than one tiny batch."
        )
    if not logits.is_floating_point():
        raise ValueError(f"{what} takes float logits (before softmax), got dtype {logits.dtype}.")
    return logits.float()


def _row_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of log-probabilities, 0 log 0 = 0. `(N, K) -> (N,)`."""
    terms = log_p.exp() * log_p  # (N, K); a class of probability 0 gives 0 * -inf = nan here
    return -torch.where(log_p == float("-inf"), torch.zeros_like(terms), terms).sum(dim=1)  # NaN logits stay NaN


def entropy(target_logits: torch.Tensor) -> torch.Tensor:
    """Mean target prediction entropy (Morerio et al. ICLR 2018, minimal-entropy correlation alignment).

    Lower is better: a model whose target predictions are confident is taken to have adapted. It
    is fooled by confidently wrong models, hence the other validators.

    Args:
        target_logits: classifier logits on the unlabelled target set.

    Returns:
        mean over examples of `-sum_k p_k log p_k`, in nats: 0 (one-hot) .. log K (uniform).

    Shape:
        target_logits `(N, K)` -> scalar.
    """
    log_p = F.log_softmax(_check_logits(target_logits, "entropy"), dim=1)  # (N, K)
    return _row_entropy(log_p).mean()


def info_max(target_logits: torch.Tensor) -> torch.Tensor:
    """Information maximisation, H(mean p) - mean H(p) (Shi & Sha ICML 2012; SHOT, Liang et al. ICML 2020).

    Higher is better: the mutual information between inputs and predicted classes, large when each
    prediction is confident (low mean H(p)) and the classes are used evenly (high H(mean p)), so a
    model collapsing every target onto one class scores low even though it is confident.

    Args:
        target_logits: classifier logits on the unlabelled target set.

    Returns:
        a value in [0, log K]: 0 for identical predictions (e.g. uniform), log K for confident,
        class-balanced ones.

    Shape:
        target_logits `(N, K)` -> scalar.
    """
    log_p = F.log_softmax(_check_logits(target_logits, "info_max"), dim=1)  # (N, K)
    mean_p = log_p.exp().mean(dim=0, keepdim=True)  # (1, K)
    return _row_entropy(mean_p.log())[0] - _row_entropy(log_p).mean()


def snd(target_logits: torch.Tensor, temperature: float = 0.05, chunk_size: int = 1024) -> torch.Tensor:
    """Soft Neighborhood Density (Saito et al. ICCV 2021, "Tune it the right way").

    Higher is better: target predictions that form dense, soft neighbourhoods (many close
    neighbours rather than one or none) indicate well-clustered target features. As in
    pytorch-adapt's `SNDValidator` (layer "preds"): softmax predictions are L2-normalised, their
    cosine-similarity matrix has the self-similarity removed, each row becomes a distribution by a
    softmax at `temperature`, and the score is the mean entropy of those rows.

    Args:
        target_logits: classifier logits on the unlabelled target set.
        temperature: softmax temperature of the neighbourhood distribution (0.05 in the paper).
        chunk_size: rows of the similarity matrix computed at once (memory `chunk_size x N`).

    Returns:
        mean neighbourhood entropy, in nats: at most log(N - 1).

    Shape:
        target_logits `(N, K)`, N >= 2 -> scalar.
    """
    if not temperature > 0:
        raise ValueError(f"snd temperature={temperature} must be > 0 (the paper uses 0.05).")
    logits = _check_logits(target_logits, "snd", min_rows=2)
    z = F.normalize(logits.softmax(dim=1), dim=1)  # (N, K) unit-norm prediction vectors
    n = len(z)
    total = z.new_zeros(())
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=z.device)
        sim = z[rows] @ z.T  # (R, N) cosine similarities
        keep = torch.ones_like(sim, dtype=torch.bool)
        keep[torch.arange(len(rows)), rows] = False  # drop each row's self-similarity
        sim = sim[keep].view(len(rows), n - 1)  # (R, N-1)
        total = total + _row_entropy(F.log_softmax(sim / temperature, dim=1)).sum()
    return total / n


# name -> (function, which direction is better, what it needs from a run)
VALIDATORS = {
    "entropy": (entropy, "lower", "logits"),
    "info_max": (info_max, "higher", "logits"),
    "snd": (snd, "higher", "logits"),
}


def oriented(name: str, value: float) -> float:
    """`value` of validator `name` signed so that higher is always better (for a sweep's maximiser)."""
    if name not in VALIDATORS:
        raise KeyError(f"unknown validator '{name}'; choose one of {sorted(VALIDATORS)}.")
    return value if VALIDATORS[name][1] == "higher" else -value


def better(metric: str) -> str | None:
    """Which way metric `metric` (a results.json `metrics` key) improves: "higher", "lower", or None (unknown).

    A label-free validator `val/target_<name>` has its own (entropy: lower; info_max, snd: higher); otherwise
    the name's last part decides: losses, errors and perplexities lower; accuracies and scores higher.
    """
    last = metric.rsplit("/", 1)[-1]
    if last.startswith("target_") and last.removeprefix("target_") in VALIDATORS:
        return VALIDATORS[last.removeprefix("target_")][1]
    if last.endswith(("loss", "error", "err", "perplexity", "ppl")):
        return "lower"
    if last.endswith(("acc", "accuracy", "f1", "auroc", "auc", "precision", "recall", "mcc")):
        return "higher"
    return None


def search_direction(objective: str, given: str | None) -> str:
    """Optuna's `direction` for `objective`: `given` ("maximize"/"minimize"), or with None/"auto" the metric's own.

    Raises `ConfigError` when `given` contradicts how the metric improves (maximising `val/target_entropy`
    chooses the least confident models) or when the direction can't be told from the metric's name.
    """
    from transferlab.errors import ConfigError

    way = better(objective)
    want = {"higher": "maximize", "lower": "minimize"}.get(way or "")
    if given in (None, "auto"):
        if want is None:
            raise ConfigError(
                f"can't tell whether objective '{objective}' improves up or down: set search.direction=maximize "
                "or search.direction=minimize."
            )
        return want
    if given not in ("maximize", "minimize"):
        raise ConfigError(f"search.direction='{given}' must be 'auto', 'maximize' or 'minimize'.")
    if want is not None and given != want:
        raise ConfigError(
            f"search.direction={given} contradicts objective '{objective}' ({way} is better): "
            f"use search.direction={want} (or auto)."
        )
    return given
