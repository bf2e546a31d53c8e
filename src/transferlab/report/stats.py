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


def winners(table: pd.DataFrame) -> list[dict]:
    """Per training-set size: the best method by mean, the runner-up, and whether their intervals overlap."""
    out = []
    for size, g in table[table.n > 0].groupby("train_size", sort=True):
        g = g.sort_values("mean", ascending=False)
        best = g.iloc[0]
        row = {
            "train_size": size,
            "train_per_class": best.train_per_class,
            "method": best.method,
            "mean": best["mean"],
            "ci95": best.ci95,
            "runner_up": None,
            "margin": None,
            "clear": True,
        }
        if len(g) > 1:
            second = g.iloc[1]
            margin = best["mean"] - second["mean"]
            overlap = np.nan_to_num(best.ci95) + np.nan_to_num(second.ci95)
            row.update(runner_up=second.method, margin=margin, clear=bool(margin > overlap))
        out.append(row)
    return out


def crossings(table: pd.DataFrame) -> list[dict]:
    """Where one method's mean curve overtakes another's, located by log-linear interpolation.

    Returns one dict per crossing: `leader` (ahead after the crossing), `other`, `between` (the two
    sizes that bracket it) and `at` (the interpolated training-set size).
    """
    curves = {
        m: g.dropna(subset=["mean"]).set_index("train_size")["mean"].sort_index() for m, g in table.groupby("method")
    }
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
                out.append({"leader": leader, "other": other, "between": (sizes[j], sizes[j + 1]), "at": at})
    return sorted(out, key=lambda c: c["at"])
