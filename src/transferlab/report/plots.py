"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from transferlab.report.stats import ci_note  # noqa: E402


def _colors(methods) -> dict:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(sorted(methods))}


def _save(fig, ax, path: Path) -> Path:
    """Save as PNG with the axes' title also in the file's metadata (PNG `Title`)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Title": ax.get_title()})
    plt.close(fig)
    return path


def _spread(table: pd.DataFrame) -> str:
    return ci_note(table).replace("95 % CI over seeds", "mean, 95 % CI over seeds")


def learning_curves(
    table: pd.DataFrame,
    metric: str,
    path: Path,
    column: str = "mean",
    ylabel: str | None = None,
    title: str | None = None,
) -> Path:
    """`column` vs training-set size (log x), one line per method, shaded 95 % CI band where n >= 2; the title
    says "1 seed: no CI" when no point has a band."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = _colors(table.method.unique())
    for method, g in table.dropna(subset=[column]).groupby("method"):
        g = g.sort_values("train_size")
        x, y = g.train_size.to_numpy(float), g[column].to_numpy(float)
        ax.plot(x, y, marker="o", color=colors[method], label=method)
        if column == "mean":
            hw = np.nan_to_num(g.ci95.to_numpy(float))
            ax.fill_between(x, y - hw, y + hw, color=colors[method], alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    sizes = sorted(table.train_size.dropna().unique())
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training-set size (labelled examples, log scale)")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(title or f"{metric} vs training-set size ({_spread(table)})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, ax, path)


def metric_vs_params(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """Mean metric vs trainable parameters (log x): one colour per method, marker size grows with data size."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = _colors(table.method.unique())
    t = table.dropna(subset=["mean", "trainable"])
    rank = t.train_size.rank(method="dense").fillna(1).to_numpy() - 1  # 0 = smallest size
    t = t.assign(area=30 + 150 * rank / max(rank.max(), 1))
    for method, g in t.groupby("method"):
        area = g.area.to_numpy()
        ax.errorbar(
            g.trainable.astype(float),
            g["mean"],
            yerr=np.nan_to_num(g.ci95.to_numpy(float)),
            fmt="none",
            ecolor=colors[method],
            alpha=0.5,
        )
        ax.scatter(g.trainable.astype(float), g["mean"], s=area, color=colors[method], label=method, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs trainable parameters ({_spread(table)})\nbigger marker = more data", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, ax, path)


def time_per_run(table: pd.DataFrame, path: Path) -> Path:
    """Mean wall time of one run vs training-set size, one line per method."""
    return learning_curves(
        table, "time", path, column="time_s", ylabel="wall time per run (s)", title="time per run (mean over seeds)"
    )
