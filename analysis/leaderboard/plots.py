"""Leaderboard figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from competition.atomic import atomic_path  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_ratings(table: pd.DataFrame, method: str | None, level: float, path: str | Path) -> Path:
    """Ratings best-on-top with their intervals; models with too few battles for one are hollow, without a bar."""
    ordered = table.sort_values("rating").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(ordered) + 1.2))
    y = np.arange(len(ordered))
    few = ordered["too_few_battles"].to_numpy(bool) if "too_few_battles" in ordered else np.zeros(len(ordered), bool)
    if method is not None:
        rated = ordered[~few]
        err = np.vstack([rated["rating"] - rated[f"{method}_lower"], rated[f"{method}_upper"] - rated["rating"]])
        ax.errorbar(rated["rating"], y[~few], xerr=err, fmt="o", ms=3, capsize=2)
        ax.set_title(f"Bradley-Terry ratings, {level:.0%} {method} intervals")
    else:
        ax.plot(ordered["rating"][~few], y[~few], "o", ms=3)
        ax.set_title("Bradley-Terry ratings")
    if few.any():
        ax.plot(ordered["rating"][few], y[few], "o", ms=4, mfc="none", color="grey", label="too few battles: no interval")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, ordered["model"], fontsize=7)
    ax.set_xlabel("rating (400 points = 10x odds)")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_win_matrix(matrix: np.ndarray, names: list[str], title: str, path: str | Path) -> Path:
    """Heatmap of P(row model beats column model), ties counted half."""
    fig, ax = plt.subplots(figsize=(0.5 * len(names) + 2.5, 0.5 * len(names) + 2))
    shown = np.where(np.eye(len(names), dtype=bool), np.nan, matrix)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=5)
    fig.colorbar(image, ax=ax, label="P(row beats column)")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
