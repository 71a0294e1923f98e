"""Leaderboard figures, printed as JSON.

1. Bradley-Terry ratings on real arena votes: fit and sandwich-interval seconds apart (median of --repeats
   runs), 100 bootstrap rounds, the Newton ratings against the L-BFGS optimiser used before; vs the
   `arena-rank` package (lmarena's own implementation): rank correlation, largest rating difference, sandwich
   interval widths; held-out "higher rating wins" accuracy and log losses for each tie model. arena-rank is
   optional (requirements-bench.txt).
2. The model-aware predictor on arena-bench-pairs, folds from the fold table (grouped by prompt), through the
   cross-fit loop: out-of-fold log loss with and without model names (and of names-only Bradley-Terry), and
   how well per-prompt leaderboards from its predictions match the judge's grades.
    python bench/leaderboard.py [--skip-predictor] [--skip-ratings] [--repeats 5] [--learning-rate 0.03] [--names-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.leaderboard.ratings import evaluate_holdout, fit_ratings, rating_table  # noqa: E402
from analysis.leaderboard.settings import (  # noqa: E402
    BattleData,
    FitConfig,
    HoldoutConfig,
    IntervalConfig,
    LeaderboardConfig,
    PairData,
    PromptLeaderboardConfig,
)
from competition.settings import CVConfig  # noqa: E402
from data.battles import encode_models, read_battles  # noqa: E402
from models.bradley_terry import ELO_PER_LOGIT, aggregate  # noqa: E402
from models.lgbm import LGBMConfig  # noqa: E402

WELL_OBSERVED = 50  # battles; below this a rating is barely identified and optimisers stop in different places


def loss_at(model, frame: pd.DataFrame, elo: pd.Series) -> float:
    """Mean negative log likelihood per battle at the given ratings: tells which optimum is better."""
    a, b, names = encode_models(frame)
    logits = (elo.reindex(names).to_numpy() - 1000.0) / ELO_PER_LOGIT
    z = np.concatenate([logits[1:] - logits[0], [0.0]])
    return float(model._objective(z, *aggregate(a, b, frame["outcome"].to_numpy()), None)[0])


def arena_rank_ratings(path: str) -> tuple[pd.DataFrame, float]:
    from arena_rank.models.bradley_terry import BradleyTerry as ArenaBT
    from arena_rank.utils.data_utils import PairDataset

    frame = pd.read_csv(path)
    start = time.perf_counter()
    dataset = PairDataset.from_pandas(frame)  # tie and both_bad count 0.5, as in ours
    result = ArenaBT(n_competitors=len(dataset.competitors)).compute_ratings_and_cis(dataset, ci_method="sandwich")
    seconds = time.perf_counter() - start
    table = pd.DataFrame(
        {
            "model": result["competitors"],
            "rating": np.asarray(result["ratings"]),
            "lower": np.asarray(result["rating_lower"]),
            "upper": np.asarray(result["rating_upper"]),
        }
    )
    return table, seconds


def timed(fn, repeats: int = 1):
    """The result of the first call, the first call's seconds and the median over `repeats` calls."""
    seconds, out = [], None
    for i in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
        out = result if i == 0 else out
    return out, seconds[0], float(np.median(seconds))


def fit_figures(frame: pd.DataFrame, cfg: LeaderboardConfig, repeats: int) -> tuple[dict, object, pd.DataFrame]:
    """Fit (encoding, aggregation, Newton), sandwich intervals and bootstrap apart; the Newton ratings against
    the L-BFGS optimiser used before, on the same aggregated battles."""
    model, fit_first, fit_median = timed(lambda: fit_ratings(frame, None, cfg), repeats)
    ours, table_first, table_median = timed(lambda: rating_table(model, frame, cfg), repeats)
    _, boot_first, _ = timed(lambda: model.bootstrap_ratings(100, cfg.seed))
    a, b, outcome, w, _ = model._data
    start = np.zeros_like(model.z_)
    (lbfgs_z, _), lbfgs_seconds, _ = timed(lambda: model._lbfgs(w, start))
    lbfgs = np.concatenate([[0.0], lbfgs_z[: model.n_models - 1]])
    diff = np.abs(model.ratings_ - (lbfgs - lbfgs.mean()))
    battles = pd.concat([frame["model_a"], frame["model_b"]]).value_counts().reindex(model.models_).to_numpy()
    gradient = {
        name: float(np.abs(model._objective(z, a, b, outcome, w, None)[1]).max())
        for name, z in (("newton", model.z_), ("lbfgs", lbfgs_z))
    }
    figures = {
        "fit_seconds_median": round(fit_median, 4),
        "fit_seconds_first": round(fit_first, 4),
        "sandwich_table_seconds_median": round(table_median, 4),
        "fit_and_sandwich_seconds_median": round(fit_median + table_median, 4),
        "repeats": repeats,
        "bootstrap_100_rounds_seconds": round(boot_first, 3),
        "lbfgs_fit_seconds": round(lbfgs_seconds, 4),
        "max_abs_rating_diff_vs_lbfgs_logits": float(diff.max()),
        "max_abs_rating_diff_vs_lbfgs_battles_of_that_model": int(battles[diff.argmax()]),
        "max_abs_rating_diff_vs_lbfgs_logits_models_with_50_battles": float(diff[battles >= WELL_OBSERVED].max()),
        "max_abs_gradient": gradient,
    }
    return figures, model, ours


def ratings_section(battles: str, seed: int, repeats: int) -> dict:
    cfg = LeaderboardConfig(
        name="bench",
        seed=seed,
        data=BattleData(battles=battles),
        intervals=IntervalConfig(methods=("sandwich",), min_battles=0),  # every model's interval, as arena-rank gives
        holdout=HoldoutConfig(share=0.2),
    )
    frame = read_battles(battles)
    figures, model, ours = fit_figures(frame, cfg, repeats)
    out: dict = {"battles": len(frame), "models": len(ours), **figures}
    try:
        reference, ref_seconds = arena_rank_ratings(battles)
    except ImportError as err:
        out["arena_rank"] = f"skipped: arena-rank not installed ({err}); pip install -r requirements-bench.txt"
    else:
        merged = ours.merge(reference, on="model", suffixes=("", "_ref"))
        diff = (merged["rating"] - merged["rating_ref"]).abs()
        width = merged["sandwich_upper"] - merged["sandwich_lower"]
        width_ref = merged["upper"] - merged["lower"]
        well = merged["battles"] >= WELL_OBSERVED
        rel_width = (width - width_ref).abs() / width_ref
        out["arena_rank"] = {
            "models_matched": len(merged),
            "spearman": float(spearmanr(merged["rating"], merged["rating_ref"]).statistic),
            "max_abs_rating_diff": float(diff.max()),
            "max_diff_model": merged.loc[diff.idxmax(), "model"],
            "max_diff_model_battles": int(merged.loc[diff.idxmax(), "battles"]),
            "mean_abs_rating_diff": float(diff.mean()),
            "max_rel_interval_width_diff": float(rel_width.max()),
            "max_abs_rating_diff_models_with_50_battles": float(diff[well].max()),
            "max_rel_interval_width_diff_models_with_50_battles": float(rel_width[well].max()),
            "nll_per_battle_ours": loss_at(model, frame, merged.set_index("model")["rating"]),
            "nll_per_battle_arena_rank": loss_at(model, frame, merged.set_index("model")["rating_ref"]),
            "arena_rank_seconds": round(ref_seconds, 2),
        }
    out["holdout"] = {
        tie_model: evaluate_holdout(frame, None, replace(cfg, fit=FitConfig(tie_model=tie_model)))
        for tie_model in ("half", "rao-kupper", "davidson")
    }
    return out


def predictor_section(pairs: str, grades: str, seed: int, learning_rate: float, names_only: bool) -> dict:
    from analysis.leaderboard.prompt import evaluate_predictor, load_pairs

    cfg = PromptLeaderboardConfig(
        data=PairData(train=pairs, grades=grades), cv=CVConfig(seed=seed), lgbm=LGBMConfig(learning_rate=learning_rate)
    )
    start = time.perf_counter()
    result = evaluate_predictor(load_pairs(cfg), cfg, names_only=names_only)
    result["learning_rate"], result["seconds"] = learning_rate, round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--battles", default="../shared/data/arena-140k-battles/battles.csv")
    parser.add_argument("--pairs", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--grades", default="../shared/data/arena-bench-pairs/grades.csv")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=5, help="fit and sandwich timings: median of this many runs")
    parser.add_argument(
        "--learning-rate", type=float, default=0.1, help="LightGBM rate for the predictor (0.1: 5 folds x 2 in minutes)"
    )
    parser.add_argument("--skip-ratings", action="store_true")
    parser.add_argument("--skip-predictor", action="store_true")
    parser.add_argument(
        "--names-only", action="store_true", help="only the names-only Bradley-Terry baseline of the predictor section (seconds)"
    )
    args = parser.parse_args()
    out = {}
    if not args.skip_ratings:
        out["ratings"] = ratings_section(args.battles, args.seed, args.repeats)
    if not args.skip_predictor:
        out["model_aware_predictor"] = predictor_section(args.pairs, args.grades, args.seed, args.learning_rate, args.names_only)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
