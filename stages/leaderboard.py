"""`leaderboard`: Bradley-Terry ratings of battles with intervals and the held-out check
(analysis/leaderboard/ratings.py), written as one unit with the table and its plot.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.leaderboard.plots import plot_ratings
from analysis.leaderboard.ratings import (
    LeaderboardResult,
    check_style_features,
    evaluate_holdout,
    fit_ratings,
    load_battles,
    rating_table,
)
from analysis.leaderboard.settings import LeaderboardConfig
from competition.errors import InputError
from competition.rundir import check_run, run_unit


def run_leaderboard(cfg: LeaderboardConfig, write: bool = True) -> LeaderboardResult:
    """Ratings, intervals and the held-out check; with `write`, the run directory as one unit."""
    check_style_features(cfg)
    if write:
        check_run(cfg)
    frame, covariates = load_battles(cfg)
    if len(set(frame["model_a"]) | set(frame["model_b"])) < 2:
        raise InputError("need battles between at least two models", cfg.data.battles)
    model = fit_ratings(frame, covariates, cfg)
    table = rating_table(model, frame, cfg)
    holdout = evaluate_holdout(frame, covariates, cfg) if cfg.holdout.share > 0 else {}
    result = LeaderboardResult(table, holdout, model)
    if write:
        result.run_dir = write_outputs(cfg, result)
    return result


def write_outputs(cfg: LeaderboardConfig, result: LeaderboardResult) -> Path:
    extra = {
        "tie_model": cfg.fit.tie_model,
        "tie_param": result.model.tie_param_,
        "style_coefs": dict(zip(cfg.fit.style_features, result.model.coefs_.tolist(), strict=True)),
        "min_battles": cfg.intervals.min_battles,
        "too_few_battles": result.table.loc[result.table["too_few_battles"], "model"].tolist(),
    }
    method = cfg.intervals.active[0] if cfg.intervals.active else None
    with run_unit(cfg, {"models": len(result.table)}) as staging:
        result.table.to_csv(staging / "leaderboard.csv", index=False)
        (staging / "summary.json").write_text(json.dumps({**extra, "holdout": result.holdout}, indent=1), encoding="utf-8")
        plot_ratings(result.table, method, cfg.intervals.level, staging / "leaderboard.png")
    return cfg.run_dir
