"""Leaderboards from battles: Bradley-Terry fitted to battles (style covariates optional), intervals, the held-out check."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.leaderboard.settings import LeaderboardConfig
from competition.errors import InputError
from competition.metric import log_loss, prior_log_loss
from competition.progress import progress
from data.battles import encode_models, outcomes_from_frame, read_battles, split_battles
from data.loader import load_arena_csv
from features.registry import FEATURE_GROUPS, build_features
from models.bradley_terry import ELO_PER_LOGIT, BradleyTerry, aggregate

log = logging.getLogger(__name__)


@dataclass
class LeaderboardResult:
    table: pd.DataFrame  # one row per model, best first
    holdout: dict[str, float]
    model: BradleyTerry
    run_dir: Path | None = None


def load_battles(cfg: LeaderboardConfig) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Battles and, with style control, their covariates (A minus B feature differences)."""
    if not cfg.fit.style_features:
        return read_battles(cfg.data.battles, cfg.data.both_bad, cfg.data.max_rows), None
    frame = load_arena_csv(cfg.data.battles, max_rows=cfg.data.max_rows)
    frame = outcomes_from_frame(frame, cfg.data.both_bad, cfg.data.battles)
    return frame, style_covariates(frame, cfg.fit.style_features)


def style_covariates(frame: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """(rows, features) style differences (A minus B) of a frame with prompt and both responses: the covariates of
    style control, named by feature-registry columns."""
    groups = tuple(dict.fromkeys(c.split("__", 1)[0] for c in names))
    table = build_features(frame, groups)
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise InputError(
            f"unknown style feature {missing[0]!r}; use feature-registry column names such as lengths__logratio_tokens"
        )
    return table[list(names)].to_numpy(dtype=np.float64)


def fit_ratings(
    frame: pd.DataFrame, covariates: np.ndarray | None, cfg: LeaderboardConfig, models: list[str] | None = None
) -> BradleyTerry:
    a, b, models = encode_models(frame, models)
    outcome = frame["outcome"].to_numpy()
    model = BradleyTerry(len(models), cfg.fit.tie_model, cfg.fit.l2)
    if covariates is None:
        model.fit(*aggregate(a, b, outcome))
    else:
        model.fit(a, b, outcome, covariates=covariates)
    if not model.converged_:
        log.warning("Bradley-Terry optimiser stopped before converging; ratings may be imprecise")
    model.models_ = models
    return model


def rating_table(model: BradleyTerry, frame: pd.DataFrame, cfg: LeaderboardConfig) -> pd.DataFrame:
    """Ratings on the Elo-like scale with the configured intervals and arena's rank (1 + models surely better).

    A model with fewer than `intervals.min_battles` battles keeps its rating but gets no interval (NaN bounds)
    and no rank: `too_few_battles` says so. With two battles a sandwich interval would look narrow (the
    estimated variance of a handful of outcomes is itself unreliable) although the rating is barely identified.
    """
    names = model.models_
    shift = cfg.fit.anchor
    if cfg.fit.anchor_model is not None:
        if cfg.fit.anchor_model not in names:
            raise InputError(f"anchor_model {cfg.fit.anchor_model!r} is not among the rated models", cfg.data.battles)
        shift -= ELO_PER_LOGIT * model.ratings_[names.index(cfg.fit.anchor_model)]
    counts = pd.concat([frame["model_a"], frame["model_b"]]).value_counts()
    battles = counts.reindex(names).fillna(0).to_numpy(dtype=np.int64)
    too_few = battles < cfg.intervals.min_battles
    table = pd.DataFrame(
        {"model": names, "rating": shift + ELO_PER_LOGIT * model.ratings_, "battles": battles, "too_few_battles": too_few}
    )
    level = cfg.intervals.level
    for method in cfg.intervals.active:
        if method == "sandwich":
            se = np.sqrt(np.diag(model.sandwich_covariance())[: len(names)])
            half = norm.ppf(0.5 + level / 2) * se * ELO_PER_LOGIT
            lower, upper = table["rating"] - half, table["rating"] + half
        else:
            draws = shift + ELO_PER_LOGIT * model.bootstrap_ratings(cfg.intervals.bootstrap_rounds, cfg.seed, progress)
            lower, upper = np.quantile(draws, (1 - level) / 2, axis=0), np.quantile(draws, 0.5 + level / 2, axis=0)
        table[f"{method}_lower"] = np.where(too_few, np.nan, np.asarray(lower, dtype=np.float64))
        table[f"{method}_upper"] = np.where(too_few, np.nan, np.asarray(upper, dtype=np.float64))
    if cfg.intervals.active:
        first = cfg.intervals.active[0]
        lower, upper = table[f"{first}_lower"].to_numpy(), table[f"{first}_upper"].to_numpy()
        rank = 1 + (lower[None, :] > upper[:, None]).sum(axis=1)  # NaN bounds never count as surely better
        table.insert(0, "rank_ub", pd.Series(rank, dtype="Int64").mask(too_few))
    if too_few.any():
        log.warning(
            "%d models have fewer than %d battles: their ratings get no interval and no rank (too_few_battles)",
            int(too_few.sum()),
            cfg.intervals.min_battles,
        )
    return table.sort_values("rating", ascending=False, ignore_index=True)


def evaluate_holdout(frame: pd.DataFrame, covariates: np.ndarray | None, cfg: LeaderboardConfig) -> dict[str, float]:
    """Fit on the training part; on held-out battles: does the higher-rated model win, and log losses.

    Accuracy and binary log loss use non-tie battles (both_bad counts as a tie); the three-way log loss
    uses every held-out battle whose models were both rated.
    """
    held = split_battles(len(frame), cfg.holdout.share, cfg.seed, cfg.holdout.split)
    train_cov = None if covariates is None else covariates[~held]
    model = fit_ratings(frame[~held], train_cov, cfg)
    test = frame[held]
    a, b, _ = encode_models(test, model.models_)
    known = (a >= 0) & (b >= 0)
    test_cov = None if covariates is None else covariates[held][known]
    probs = model.predict_proba(a[known], b[known], test_cov)
    outcome = test["outcome"].to_numpy()[known]
    decided = outcome != 0.5
    diff = model.ratings_[a[known]] - model.ratings_[b[known]]
    higher_wins = np.where(diff == 0, 0.5, (diff > 0) == (outcome == 1.0))[decided]
    p_a = probs[decided, 0] / (probs[decided, 0] + probs[decided, 1])
    y = outcome[decided]
    eps = 1e-15
    binary = -np.mean(y * np.log(np.clip(p_a, eps, 1)) + (1 - y) * np.log(np.clip(1 - p_a, eps, 1)))
    labels = np.where(outcome == 1.0, 0, np.where(outcome == 0.0, 1, 2))
    return {
        "train_battles": int((~held).sum()),
        "heldout_battles": int(known.sum()),
        "heldout_decided": int(decided.sum()),
        "higher_rated_wins": float(np.mean(higher_wins)),
        "binary_log_loss": float(binary),
        "three_way_log_loss": log_loss(labels, probs),
        "three_way_prior_log_loss": prior_log_loss(labels),
    }


def check_style_features(cfg: LeaderboardConfig) -> None:
    """Style feature names must come from registry groups: checked before any data is read."""
    check_style_names(cfg.fit.style_features)


def check_style_names(names: tuple[str, ...]) -> None:
    for name in names:
        group = name.split("__", 1)[0]
        if "__" not in name or group not in FEATURE_GROUPS or FEATURE_GROUPS[group].trainer is not None:
            raise InputError(
                f"unknown style feature {name!r}; use feature-registry column names such as lengths__logratio_tokens"
            )
