"""Feature-group ablation: Δ out-of-fold log loss when each group is dropped, per fold and pooled.

Every variant reuses one feature table and one fold assignment, so differences come from the
dropped columns alone.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from competition.atomic import write_atomic  # noqa: E402
from competition.config import save_config  # noqa: E402
from competition.folds import assign_folds  # noqa: E402
from competition.metric import log_loss  # noqa: E402
from competition.pipeline import cross_validate, featurize, load_train  # noqa: E402
from competition.settings import SpineConfig  # noqa: E402
from features.registry import group_of  # noqa: E402


def run_ablation(cfg: SpineConfig, groups: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per dropped group: Δ log loss (positive = the group helps), mean ± std over folds."""
    train = load_train(cfg)
    y = train["label"].to_numpy()
    folds = assign_folds(y, train["group"], cfg.cv.folds, cfg.cv.seed)
    X = featurize(train, cfg)
    prompt_groups = train["group"].to_numpy()
    column_groups = np.array([group_of(c) for c in X.columns])
    to_drop = groups or tuple(dict.fromkeys(column_groups))

    def fold_losses(columns: np.ndarray) -> tuple[np.ndarray, float]:
        oof, _, scores, _ = cross_validate(X.loc[:, columns], y, folds, prompt_groups, cfg)
        return scores["log_loss"].to_numpy(), log_loss(y, oof)

    full_folds, full_pooled = fold_losses(np.ones(len(X.columns), dtype=bool))
    rows = [{"dropped": "(none)", "columns": 0, "log_loss": full_pooled, "delta_mean": 0.0, "delta_std": 0.0, "folds_worse": 0}]
    for group in to_drop:
        keep = column_groups != group
        if keep.all() or not keep.any():
            continue
        dropped_folds, pooled = fold_losses(keep)
        delta = dropped_folds - full_folds
        rows.append(
            {
                "dropped": group,
                "columns": int((~keep).sum()),
                "log_loss": pooled,
                "delta_mean": float(delta.mean()),
                "delta_std": float(delta.std(ddof=1)),
                "folds_worse": int((delta > 0).sum()),
            }
        )
    return pd.DataFrame(rows)


def plot_ablation(table: pd.DataFrame, path: str | Path) -> Path:
    data = table[table["dropped"] != "(none)"].sort_values("delta_mean")
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(data) + 1.5))
    colors = ["#2a9d8f" if d > 0 else "#e76f51" for d in data["delta_mean"]]
    ax.barh(data["dropped"], data["delta_mean"], xerr=data["delta_std"], color=colors, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("Δ out-of-fold log loss when the group is dropped (mean ± std over folds; > 0: the group helps)")
    ax.set_title("Feature-group ablation")
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return Path(path)


def write_ablation(cfg: SpineConfig, table: pd.DataFrame) -> tuple[Path, Path]:
    out = cfg.run_dir / "ablation"
    save_config(cfg, out / "config.toml")
    csv_path = write_atomic(out / "ablation.csv", lambda p: table.to_csv(p, index=False))
    return csv_path, plot_ablation(table, out / "ablation.png")
