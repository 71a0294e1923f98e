"""Figures of a dissection: effects with intervals, a property × scenario heatmap, a judge-similarity matrix, and
a SHAP waterfall for one pair."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def heatmap(matrix: pd.DataFrame, path: Path, title: str, label: str, center: float = 0.0) -> Path:
    values = matrix.to_numpy(dtype=float)
    limit = np.nanmax(np.abs(values - center)) if np.isfinite(values).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * matrix.shape[1], 1.0 + 0.35 * matrix.shape[0]))
    image = ax.imshow(values, cmap="RdBu_r", vmin=center - limit, vmax=center + limit, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=35, ha="right")
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "—" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    return _saved(fig, path)


def effects_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    ordered = table.sort_values("odds_ratio")
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.3 * len(ordered)))
    y = np.arange(len(ordered))
    ax.errorbar(
        ordered["odds_ratio"],
        y,
        xerr=[ordered["odds_ratio"] - ordered["odds_ratio_low"], ordered["odds_ratio_high"] - ordered["odds_ratio"]],
        fmt="o",
        capsize=3,
    )
    ax.axvline(1.0, color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(y, ordered["property"])
    ax.set_xlabel("odds of winning × per typical A − B difference (95% credible interval)")
    ax.set_title(title)
    return _saved(fig, path)


def waterfall(contributions: pd.Series, base: float, path: Path, title: str) -> Path:
    ordered = contributions.reindex(contributions.abs().sort_values().index)
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.35 * len(ordered)))
    starts = base + ordered.cumsum() - ordered
    ax.barh(range(len(ordered)), ordered.to_numpy(), left=starts.to_numpy(), color=np.where(ordered > 0, "tab:red", "tab:blue"))
    ax.set_yticks(range(len(ordered)), ordered.index)
    ax.axvline(base, color="grey", lw=1)
    ax.set_xlabel("raw score of class 'A wins' (log-odds scale), from the model's base value")
    ax.set_title(title)
    return _saved(fig, path)


def _saved(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
