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


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (method x training-set size) over its ok seeds.

    Columns: method, train_per_class, train_size, n (ok seeds), failed, mean, ci95, std, val_acc,
    trainable, total, time_s, peak_mem_mb, and the mean of every other test accuracy (e.g. test/source_acc).
    """
    rows = []
    also = [c for c in runs.columns if c.startswith("also:")]  # other test accuracies, e.g. test/source_acc
    keys = ["method", "train_per_class"]
    for (method, per_class), g in runs.groupby(keys, dropna=False, sort=False):
        ok = g[(g.status == "ok") & g.metric.notna()]
        m = ok.metric.astype(float)
        rows.append(
            {
                "method": method,
                "train_per_class": per_class,
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
    for size, g in table[table.n > 0].groupby("train_size", sort=True):
        g = g.sort_values("mean", ascending=False)
        best, others = g.iloc[0], [r for _, r in g.iloc[1:].iterrows()]
        row = {"train_size": size, "train_per_class": best.train_per_class, "method": best.method}
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


def crossings(table: pd.DataFrame) -> list[dict]:
    """Where one method's mean curve overtakes another's, located by log-linear interpolation.

    Returns one dict per crossing: `leader` (ahead after the crossing), `other`, `between` (the two
    sizes that bracket it), `at` (the interpolated training-set size) and `clear` (the 95 % intervals
    separate the two methods at both bracketing sizes: the crossing is beyond the seed noise).
    """
    rows = {m: g.dropna(subset=["mean"]).set_index("train_size").sort_index() for m, g in table.groupby("method")}
    curves = {m: r["mean"] for m, r in rows.items()}
    out = []
    names = sorted(curves)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = curves[a].index.intersection(curves[b].index)
            diff = (curves[a][common] - curves[b][common]).to_numpy()
            sizes = np.asarray(common, dtype=float)
            for j in range(len(diff) - 1):
                if diff[j] == 0 or np.sign(diff[j]) == np.sign(diff[j + 1]) or diff[j + 1] == 0:
                    continue
                t = diff[j] / (diff[j] - diff[j + 1])
                at = float(np.exp(np.log(sizes[j]) + t * (np.log(sizes[j + 1]) - np.log(sizes[j]))))
                leader, other = (a, b) if diff[j + 1] > 0 else (b, a)
                ends = [separated(rows[a].loc[sizes[k]], rows[b].loc[sizes[k]]) for k in (j, j + 1)]
                out.append(
                    {
                        "leader": leader,
                        "other": other,
                        "between": (sizes[j], sizes[j + 1]),
                        "at": at,
                        "clear": all(ends),
                    }
                )
    return sorted(out, key=lambda c: c["at"])
