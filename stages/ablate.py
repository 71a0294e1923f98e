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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from competition.crossfit import cross_fit  # noqa: E402
from competition.errors import InputError  # noqa: E402
from competition.folds import folds_for  # noqa: E402
from competition.metric import log_loss  # noqa: E402
from competition.rundir import RunKind, check_run, run_unit  # noqa: E402
from data.labelled import load_labelled  # noqa: E402
from features.registry import attach_features_alone  # noqa: E402
from models.lgbm import LGBMPreference  # noqa: E402
from stages.families import attached_groups, training_features  # noqa: E402
from stages.training import TrainingConfig  # noqa: E402

DISTILLATION = "distillation"


def run_ablation(cfg: TrainingConfig, groups: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per dropped group: Δ log loss (positive = the group helps), mean ± std over folds, scored both
    ways: the whole file, and each validation row alone (as if its file held no other answer to its prompt).
    With a teacher configured, a "distillation" row drops the teacher instead."""
    known = set(cfg.features.groups) | ({DISTILLATION} if cfg.lgbm.teacher else set())
    unknown = [g for g in groups or () if g not in known]
    if unknown:
        raise InputError(f"--groups names {unknown[0]!r}, which is not among the configured groups {sorted(known)}")
    train = load_labelled(cfg.data)
    y, prompt_groups = train["label"].to_numpy(), train["group"].to_numpy()
    folds = folds_for(train, cfg.cv)
    frame = training_features(train, attached_groups(cfg), cfg.features)
    alone = attach_features_alone(train, attached_groups(cfg), cfg.features.cache_dir)

    def fold_losses(kept: tuple[str, ...], lgbm=cfg.lgbm) -> dict[str, tuple[np.ndarray, float]]:
        features = replace(cfg.features, groups=kept)
        result = cross_fit(
            lambda fold: LGBMPreference(lgbm, features, seed=cfg.cv.seed + fold),
            frame,
            y,
            folds,
            prompt_groups,
            views={"alone": alone},
        )
        scores = result.fold_scores
        return {
            "": (scores["log_loss"].to_numpy(), log_loss(y, result.oof)),
            "_alone": (scores["log_loss_alone"].to_numpy(), log_loss(y, result.view_oof["alone"])),
        }

    full = fold_losses(cfg.features.groups)
    rows = [{"dropped": "(none)"} | {f"log_loss{m}": full[m][1] for m in full}]
    chosen = groups or (*cfg.features.groups, *([DISTILLATION] if cfg.lgbm.teacher else []))
    # distillation is ablated like a group: the same model without its teacher
    variants = [
        (name, cfg.features.groups, replace(cfg.lgbm, teacher=""))
        if name == DISTILLATION
        else (name, tuple(g for g in cfg.features.groups if g != name), cfg.lgbm)
        for name in chosen
    ]
    for name, kept, lgbm in variants:
        if not kept:
            continue
        dropped = fold_losses(kept, lgbm)
        row = {"dropped": name}
        for mode, (fold_loss, pooled) in dropped.items():
            delta = fold_loss - full[mode][0]
            row |= {
                f"log_loss{mode}": pooled,
                f"delta_mean{mode}": float(delta.mean()),
                f"delta_std{mode}": float(delta.std(ddof=1)),
                f"folds_worse{mode}": int((delta > 0).sum()),
            }
        rows.append(row)
    return pd.DataFrame(rows).fillna({c: 0.0 for c in ("delta_mean", "delta_std", "delta_mean_alone", "delta_std_alone")})


def plot_ablation(table: pd.DataFrame, path: str | Path) -> Path:
    data = table[table["dropped"] != "(none)"].sort_values("delta_mean")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(data) + 1.8), sharey=True)
    for ax, mode, title in ((axes[0], "", "the whole file"), (axes[1], "_alone", "each row alone")):
        deltas = data[f"delta_mean{mode}"]
        colors = ["#2a9d8f" if d > 0 else "#e76f51" for d in deltas]
        ax.barh(data["dropped"], deltas, xerr=data[f"delta_std{mode}"], color=colors, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"scored on {title}")
        ax.set_xlabel("Δ OOF log loss when dropped (> 0: the group helps)")
    fig.suptitle("Feature-group ablation (mean ± std over folds)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def ablation_dir(cfg: TrainingConfig) -> Path:
    return cfg.run_dir / "ablation"


def write_ablation(cfg: TrainingConfig, table: pd.DataFrame) -> tuple[Path, Path]:
    out = ablation_dir(cfg)
    with run_unit(cfg, target=out, kind=RunKind.ABLATION) as staging:
        table.to_csv(staging / "ablation.csv", index=False)
        plot_ablation(table, staging / "ablation.png")
    return out / "ablation.csv", out / "ablation.png"


def check_ablation_outputs(cfg: TrainingConfig) -> None:
    check_run(cfg, ablation_dir(cfg), RunKind.ABLATION)
