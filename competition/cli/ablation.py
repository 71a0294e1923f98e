"""Feature-group ablation: Δ out-of-fold log loss when each group is dropped, per fold and pooled.

Every variant runs through the one cross-fit loop on one feature table and one fold table, so
differences come from the dropped columns alone.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from competition.cli.pipeline import SpineConfig, load_train, train_folds  # noqa: E402
from competition.config import save_config  # noqa: E402
from competition.crossfit import cross_fit  # noqa: E402
from competition.errors import InputError  # noqa: E402
from competition.metric import log_loss  # noqa: E402
from competition.rundir import check_outputs, staged_unit  # noqa: E402
from features.registry import attach_features  # noqa: E402
from models.lgbm import LGBMPreference  # noqa: E402


def run_ablation(cfg: SpineConfig, groups: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per dropped group: Δ log loss (positive = the group helps), mean ± std over folds."""
    unknown = [g for g in groups or () if g not in cfg.features.groups]
    if unknown:
        raise InputError(f"--groups names {unknown[0]!r}, which is not among the configured groups {list(cfg.features.groups)}")
    train = load_train(cfg.data)
    y, prompt_groups = train["label"].to_numpy(), train["group"].to_numpy()
    folds = train_folds(train, cfg.cv)
    frame = attach_features(train, cfg.features.groups, cfg.features.cache_dir)

    def fold_losses(kept: tuple[str, ...]):
        features = replace(cfg.features, groups=kept)
        result = cross_fit(
            lambda fold: LGBMPreference(cfg.lgbm, features, seed=cfg.cv.seed + fold), frame, y, folds, prompt_groups
        )
        return result.fold_scores["log_loss"].to_numpy(), log_loss(y, result.oof)

    full_folds, full_pooled = fold_losses(cfg.features.groups)
    rows = [{"dropped": "(none)", "log_loss": full_pooled, "delta_mean": 0.0, "delta_std": 0.0, "folds_worse": 0}]
    for group in groups or cfg.features.groups:
        kept = tuple(g for g in cfg.features.groups if g != group)
        if not kept:
            continue
        dropped_folds, pooled = fold_losses(kept)
        delta = dropped_folds - full_folds
        rows.append(
            {
                "dropped": group,
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
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def ablation_dir(cfg: SpineConfig) -> Path:
    return cfg.run_dir / "ablation"


def write_ablation(cfg: SpineConfig, table: pd.DataFrame) -> tuple[Path, Path]:
    out = ablation_dir(cfg)
    with staged_unit(out, "ablation") as staging:
        save_config(cfg, staging / "config.toml")
        table.to_csv(staging / "ablation.csv", index=False)
        plot_ablation(table, staging / "ablation.png")
    return out / "ablation.csv", out / "ablation.png"


def check_ablation_outputs(cfg: SpineConfig) -> None:
    check_outputs([ablation_dir(cfg)], cfg.inputs())
