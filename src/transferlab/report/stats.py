"""Aggregate runs over seeds (mean and 95 % t-interval), the winner per size, where curves cross."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def ci95(values) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t, n - 1 dof); NaN for n < 2."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def mean_ci(values, digits: int = 3) -> str:
    """`"mean ± ci95"` as the study tables print it (the mean alone for one value, "n/a" for none)."""
    x = [v for v in values if v is not None and not math.isnan(v)]
    if not x:
        return "n/a"
    m = sum(x) / len(x)
    return f"{m:.{digits}f}" if len(x) < 2 else f"{m:.{digits}f} ± {ci95(x):.{digits}f}"


def choose(scores: dict, higher: bool = True) -> tuple:
    """`(best candidate, seeds)`: the candidate whose mean score is best over the seeds every candidate has.

    `scores` maps candidate -> {seed: score}. Means over unequal seed sets would let a candidate win by missing a
    bad seed, so a seed that failed or is still running for one candidate drops out of every mean. Ties keep the
    first candidate in `scores`' order (callers put the preferred one first, e.g. the lower rate). Raises
    ValueError when no seed is common to all candidates.
    """
    common = sorted(set.intersection(*(set(v) for v in scores.values()))) if scores else []
    if not common:
        raise ValueError(f"no seed is common to all of {list(scores)}: nothing to compare them on")

    def mean(k) -> float:
        return sum(scores[k][s] for s in common) / len(common)

    return (max if higher else min)(scores, key=mean), common


def on_seeds(scores: dict, seeds: list) -> str:
    """`""` when every candidate of `choose` ran exactly `seeds`, else the note a table puts beside its choice."""
    return "" if all(len(v) == len(seeds) for v in scores.values()) else f" (on seeds {', '.join(map(str, seeds))})"


def pick(scores: dict, higher: bool = True) -> tuple:
    """`(best candidate, note)` for a study table: `choose`'s pick and `on_seeds`' note beside it, or `(None, "")`
    while no seed is common to all candidates (a sweep still running): nothing is marked chosen."""
    try:
        best, seeds = choose(scores, higher)
    except ValueError:
        return None, ""
    return best, on_seeds(scores, seeds)


def strategy_setting(result: dict, key: str):
    """The value a run used for `strategy.<key>`: what its `auto` resolved to on its backbone (results.json
    `strategy_choices`, e.g. feature extraction's `lr`, LoRA's `peft_lr`), else the configured value."""
    used = ((result.get("strategy_choices") or {}).get(key) or {}).get("used")
    return used if used is not None else ((result.get("config") or {}).get("strategy") or {}).get(key)


# The configured training-set size (`data.train_per_class` or `data.train_fraction`; both null: all examples):
# runs that differ in it are different configurations, whatever their method.
SIZE_KEYS = ("train_per_class", "train_fraction")


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (method x training-set size, `SIZE_KEYS`) over its ok seeds.

    Columns: method, train_per_class, train_fraction, train_size, n (ok seeds), failed, mean, ci95, std,
    val_acc, trainable, total, time_s, peak_mem_mb, and the mean of every other test accuracy (e.g.
    test/source_acc).
    """
    rows = []
    also = [c for c in runs.columns if c.startswith("also:")]  # other test accuracies, e.g. test/source_acc
    sizes = [k for k in SIZE_KEYS if k in runs]
    for key, g in runs.groupby(["method", *sizes], dropna=False, sort=False):
        ok = g[(g.status == "ok") & g.metric.notna()]
        m = ok.metric.astype(float)
        rows.append(
            {
                "method": key[0],
                **dict(zip(sizes, key[1:], strict=True)),
                "norm": ",".join(sorted(set(g["norm"]))) if "norm" in g else "n/a",
                "train_size": ok.train_size.mean() if len(ok) else g.train_size.mean(),
                "n": len(ok),
                "failed": int((g.status != "ok").sum()),
                "mean": m.mean() if len(ok) else float("nan"),
                "ci95": ci95(m),
                "std": m.std(ddof=1) if len(ok) > 1 else float("nan"),
                "val_acc": ok.val_acc.astype(float).mean() if len(ok) else float("nan"),
                "trainable": ok.trainable.max() if len(ok) else None,
                "total": ok.total.max() if len(ok) else None,
                "time_s": ok.time_s.mean() if len(ok) else float("nan"),
                "peak_mem_mb": ok.peak_mem_mb.mean() if len(ok) else float("nan"),
                **{c.split(":", 1)[1]: ok[c].astype(float).mean() if len(ok) else float("nan") for c in also},
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(["train_size", "method"], na_position="last").reset_index(drop=True)


def separated(a, b) -> bool:
    """True when two rows' 95 % intervals do not overlap (both need >= 2 seeds: one seed has no interval)."""
    if a.n < 2 or b.n < 2 or math.isnan(a.ci95) or math.isnan(b.ci95):
        return False
    hi, lo = (a, b) if a["mean"] >= b["mean"] else (b, a)
    return bool(hi["mean"] - hi.ci95 > lo["mean"] + lo.ci95)


def ci_note(table: pd.DataFrame) -> str:
    """How the table's uncertainty is shown: "95 % CI over seeds", "1 seed: no CI", or mixed."""
    n = table.n[table.n > 0]
    if n.empty or (n < 2).all():
        return "1 seed: no CI"
    return "95 % CI over seeds" if (n >= 2).all() else "95 % CI where >= 2 seeds; 1 seed: no CI"


def winners(table: pd.DataFrame) -> list[dict]:
    """Per training-set size: the best method by mean, the runner-up, and whether the best is a clear winner.

    `verdict`: "clear" (its 95 % interval overlaps no other method's), "overlap" (it does: `overlapping` names
    them), "no_ci" (one seed somewhere: no interval, no winner), "alone" (the only method at that size).
    `clear` is True for "clear" only.
    """
    out = []
    keys = ["train_size", *(k for k in SIZE_KEYS if k in table)]  # one group per configured size
    for _, g in table[table.n > 0].groupby(keys, dropna=False, sort=True):
        g = g.sort_values("mean", ascending=False)
        best, others = g.iloc[0], [r for _, r in g.iloc[1:].iterrows()]
        row = {k: best.get(k) for k in ("train_size", *SIZE_KEYS)} | {"method": best.method}
        row |= {"mean": best["mean"], "ci95": best.ci95, "n": int(best.n), "runner_up": None, "margin": None}
        overlapping = [o.method for o in others if not separated(best, o)]
        if not others:
            verdict = "alone"
        elif best.n < 2 or any(o.n < 2 for o in others):
            verdict = "no_ci"
        else:
            verdict = "overlap" if overlapping else "clear"
        if others:
            row.update(runner_up=others[0].method, margin=best["mean"] - others[0]["mean"])
        out.append({**row, "verdict": verdict, "clear": verdict == "clear", "overlapping": overlapping})
    return out


def _curves(table: pd.DataFrame) -> dict[str, dict[float, list]]:
    """method -> training-set size -> its table rows with a mean (several when two configured sizes, e.g.
    10/class and a fraction, select the same number of examples)."""
    out: dict[str, dict[float, list]] = {}
    for method, g in table.dropna(subset=["mean", "train_size"]).groupby("method"):
        out[method] = {float(s): [r for _, r in rows.iterrows()] for s, rows in g.groupby("train_size", sort=True)}
    return out


def _pooled(rows: list) -> float:
    """The mean over every ok seed of `rows` (one row: its mean)."""
    return sum(r.n * r["mean"] for r in rows) / sum(r.n for r in rows)


def _sign_changes(diff: np.ndarray) -> list[tuple[int, int]]:
    """(j, k): consecutive non-zero entries of opposite sign; exact ties (zeros) between them are crossed
    through, so -, 0, + is one change and -, 0, - none."""
    nz = [j for j, d in enumerate(diff) if d != 0]
    return [(j, k) for j, k in zip(nz, nz[1:], strict=False) if np.sign(diff[j]) != np.sign(diff[k])]


def _crossing(a: str, b: str, rows: dict, sizes: np.ndarray, diff: np.ndarray, j: int, k: int) -> dict:
    """The crossing of curves `a` and `b` between sizes[j] and sizes[k] (the means tie exactly in between
    when k > j + 1); `diff` = mean of a - mean of b per size."""
    if k == j + 1:  # log-linear interpolation of the means
        lo, hi = np.log(sizes[j]), np.log(sizes[k])
        at = float(np.exp(lo + diff[j] / (diff[j] - diff[k]) * (hi - lo)))
    else:  # the tied sizes (several: their geometric middle)
        at = float(np.exp((np.log(sizes[j + 1]) + np.log(sizes[k - 1])) / 2))
    ends = [all(separated(ra, rb) for ra in rows[a][sizes[e]] for rb in rows[b][sizes[e]]) for e in (j, k)]
    leader, other = (a, b) if diff[k] > 0 else (b, a)
    return {
        "leader": leader,
        "other": other,
        "between": (float(sizes[j]), float(sizes[k])),
        "at": at,
        "tie": k > j + 1,
        "clear": all(ends),
    }


def crossings(table: pd.DataFrame) -> list[dict]:
    """Where one method's mean curve overtakes another's, located by log-linear interpolation.

    Returns one dict per crossing: `leader` (ahead after the crossing), `other`, `between` (the two
    sizes that bracket it), `at` (the interpolated training-set size, or the size where the means tie
    exactly), `tie` (they do: the ranking flips through that tie) and `clear` (the 95 % intervals separate
    the two methods at both bracketing sizes: the crossing is beyond the seed noise). A method with several
    rows at one size (different configured sizes) counts there with the mean over all their seeds.
    """
    rows = _curves(table)
    out = []
    names = sorted(rows)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sizes = np.asarray(sorted(set(rows[a]) & set(rows[b])), dtype=float)
            diff = np.asarray([_pooled(rows[a][s]) - _pooled(rows[b][s]) for s in sizes])
            out += [_crossing(a, b, rows, sizes, diff, j, k) for j, k in _sign_changes(diff)]
    return sorted(out, key=lambda c: c["at"])
