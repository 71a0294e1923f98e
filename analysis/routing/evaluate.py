"""Routing evaluated out of fold: quality predictions on graded prompts, routing against baselines, a quality-vs-cost curve.

Folds are over prompts (each prompt is its own group), taken from the fold table, so every prediction
comes from a model that never saw that prompt. Baselines: every single model, the best single model
(by training-fold mean), uniform random choice, the cheapest model, and the per-prompt oracle (true grades).

The quality model predicts a (prompts × models) grade matrix, not three-way preference probabilities, so
it does not fit the cross-fit loop (which scores (n, 3) probabilities against class labels): its one fold
loop is `out_of_fold_quality`, over the same kind of fold table every stage reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.routing.per_query import per_query_figures
from analysis.routing.quality import PromptQuality, prompt_features
from analysis.routing.router import mean_cost, route_budget, route_lambda
from analysis.routing.settings import RoutingConfig
from competition.config import read_toml
from competition.errors import InputError
from competition.folds import fold_table, prompt_groups
from data.loader import load_arena_csv
from data.tables import check_model_names, read_grades, read_prompts

log = logging.getLogger(__name__)


@dataclass
class GradedPrompts:
    ids: np.ndarray  # question_id per prompt
    models: list[str]
    grades: np.ndarray  # (prompts, models), NaN where a model has no graded answer
    prompts: list[list[str | None]]
    quality: str = "grade"  # what `grades` holds: judge grades, or per-prompt win shares derived from pairs


def load_graded(cfg: RoutingConfig) -> GradedPrompts:
    """Every candidate model's quality on every prompt: judge grades, or per-prompt win shares from the pairs."""
    data = _from_grades(cfg.data.grades, cfg.data.prompts) if cfg.data.grades else _from_pairs(cfg.data.prompts)
    return _candidates(data, cfg.router.models)


def _from_grades(grades_path: str, prompts_path: str) -> GradedPrompts:
    grades = read_grades(grades_path)
    matrix = grades.pivot_table(index="question_id", columns="model", values="grade", aggfunc="mean")
    texts = read_prompts(prompts_path, id_column="question_id").drop_duplicates("question_id").set_index("question_id")
    unknown = matrix.index.difference(texts.index)
    if len(unknown):
        raise InputError(f"{len(unknown)} graded prompts have no text in the prompts file, e.g. {unknown[0]!r}", prompts_path)
    return GradedPrompts(
        matrix.index.to_numpy(),
        list(matrix.columns),
        matrix.to_numpy(dtype=np.float64),
        texts.loc[matrix.index, "prompt"].tolist(),
        "grade",
    )


def _from_pairs(path: str) -> GradedPrompts:
    """Per prompt, each model's share of its pairwise comparisons won (ties half): the quality when no grades exist.

    Meaningful when most models answered every prompt (arena-bench-pairs, the embedded sample); on files
    with one pair per prompt each prompt has only two candidates.
    """
    frame = load_arena_csv(path, require_labels=True)
    for column in ("model_a", "model_b"):
        if column not in frame.columns:
            raise InputError("without a grades file, routing needs the pairs' model_a/model_b columns", path, column=column)
    check_model_names(frame, path)
    group = prompt_groups(frame).to_numpy()
    score_a = np.array([1.0, 0.0, 0.5])[frame["label"].to_numpy()]
    long = pd.DataFrame(
        {
            "group": np.concatenate([group, group]),
            "model": np.concatenate([frame["model_a"].to_numpy(), frame["model_b"].to_numpy()]),
            "won": np.concatenate([score_a, 1.0 - score_a]),
        }
    )
    matrix = long.pivot_table(index="group", columns="model", values="won", aggfunc="mean")
    if matrix.notna().sum(axis=1).mean() < 3:
        log.warning("%s: fewer than 3 models per prompt on average; routing has little to choose from", path)
    first = pd.Series(frame["prompt"].to_numpy(), index=group)
    texts = first[~first.index.duplicated()]
    return GradedPrompts(
        matrix.index.to_numpy(),
        list(matrix.columns),
        matrix.to_numpy(dtype=np.float64),
        texts.loc[matrix.index].tolist(),
        "win share",
    )


def _candidates(data: GradedPrompts, models: tuple[str, ...]) -> GradedPrompts:
    """Only the named candidate models (all when none are named); prompts none of them answered are left out."""
    if not models:
        return data
    unknown = [m for m in models if m not in data.models]
    if unknown:
        raise InputError(f"unknown model {unknown[0]!r} (known: {', '.join(data.models)})")
    if len(models) < 2:
        raise InputError("route between at least two models")
    columns = [data.models.index(m) for m in models]
    grades = data.grades[:, columns]
    kept = np.flatnonzero(~np.isnan(grades).all(axis=1))
    return GradedPrompts(data.ids[kept], list(models), grades[kept], [data.prompts[i] for i in kept], data.quality)


def load_costs(cfg: RoutingConfig) -> dict[str, float]:
    """The cost table (router.costs_file) with router.costs on top; a file that is not a table of
    non-negative numbers is one line naming it."""
    costs: dict[str, float] = {}
    if cfg.router.costs_file:
        path = Path(cfg.router.costs_file)
        table = read_toml(path, "cost table")
        bad = [k for k, v in table.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < np.inf]
        if bad:
            raise InputError(f"cost of {bad[0]!r} must be a non-negative finite number", path)
        costs.update({k: float(v) for k, v in table.items()})
    return {**costs, **cfg.router.costs}


def cost_vector(models: list[str], costs: dict[str, float], costs_file: str | None = None) -> np.ndarray:
    missing = [m for m in models if m not in costs]
    if missing:
        raise InputError(
            f"no cost for model {missing[0]!r} in the cost table ({len(missing)} missing; see router.costs_file)",
            costs_file or None,
        )
    negative = [m for m in models if not costs[m] >= 0]
    if negative:
        raise InputError(f"cost of {negative[0]!r} must be a non-negative number, got {costs[negative[0]]}")
    return np.array([costs[m] for m in models], dtype=np.float64)


def budget_grid(costs: np.ndarray, available: np.ndarray, points: int) -> np.ndarray:
    """Budgets from the cheapest possible routing (each prompt's cheapest answering model) up to the dearest model."""
    floor = float(np.mean(np.where(available, costs[None, :], np.inf).min(axis=1)))
    start = max(floor, costs[costs > 0].min() if (costs > 0).any() else 1.0)
    top = max(start, costs.max())
    grid = np.geomspace(start, top, points)
    return np.concatenate([[floor], grid[grid > floor * (1 + 1e-9)]])


def out_of_fold_quality(X: np.ndarray, grades: np.ndarray, folds: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(predicted quality, training-fold mean grade per model) for each prompt, both out of fold."""
    predicted, train_mean = np.zeros_like(grades), np.zeros_like(grades)
    for fold in np.unique(folds):
        fit, held = folds != fold, folds == fold
        model = PromptQuality(alpha).fit(X[fit], grades[fit])
        predicted[held] = model.predict(X[held])
        train_mean[held] = model.model_mean_
    return predicted, train_mean


def _point(policy: str, grades: np.ndarray, costs: np.ndarray, choice: np.ndarray, budget: float | None = None) -> dict:
    achieved = grades[np.arange(len(choice)), choice]
    return {"policy": policy, "budget": budget, "mean_cost": mean_cost(choice, costs), "mean_grade": float(np.mean(achieved))}


def prompt_folds(data: GradedPrompts, cfg: RoutingConfig) -> np.ndarray:
    """The fold of every prompt from the fold table (each prompt its own group; no labels to stratify)."""
    if len(data.ids) < cfg.cv.folds:
        source = cfg.data.grades or cfg.data.prompts
        raise InputError(f"{cfg.cv.folds} folds need at least {cfg.cv.folds} prompts, found {len(data.ids)}", source)
    table = fold_table(data.ids, data.ids, None, cfg.cv.folds, cfg.cv.seed, cfg.cv.fold_dir)
    return table["fold"].to_numpy()


def evaluate_routing(
    data: GradedPrompts,
    X: np.ndarray,
    cfg: RoutingConfig,
    other_routers: dict[str, np.ndarray] | None = None,
    per_query_routers: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(curve and baseline points, summary at the budget, per-prompt decisions at the budget).

    `other_routers` maps a name to another out-of-fold (prompts × models) quality matrix (e.g. P2L's win
    rates): each is routed under the same budgets and reported beside the ridge router as `<name>_...`.
    `per_query_routers` are utilities for P2L's randomized router: the budget is then a per-query limit on each
    prompt's expected cost (analysis/routing/per_query.py), reported the same way, with the per-query oracle."""
    costs, grades = cost_vector(data.models, load_costs(cfg), cfg.router.costs_file), data.grades
    available = ~np.isnan(grades)
    folds = prompt_folds(data, cfg)
    predicted, train_mean = out_of_fold_quality(X, grades, folds, cfg.quality.alpha)
    overall_mean = np.nanmean(grades, axis=0)
    best = int(np.argmax(overall_mean))
    cheapest = int(np.lexsort((-overall_mean, costs))[0])  # ties in price: the better model
    # The curve: both policies under a grid of budgets, from the cheapest routing to no limit.
    budgets = budget_grid(costs, available, cfg.router.curve_points)
    points = [
        _point(policy, grades, costs, route_budget(q, costs, b, available), budget=b)
        for policy, q in (("router", predicted), ("oracle", grades))
        for b in budgets
    ]
    # A single model stands in for itself; on the few prompts it did not answer, the cheapest model that did.
    single = [
        _point(
            f"single:{m}", grades, costs, route_lambda(np.tile(np.eye(len(costs))[j], (len(grades), 1)), costs, 0.0, available)
        )
        for j, m in enumerate(data.models)
    ]
    best_choice = route_lambda(train_mean, costs, 0.0, available)  # the best model by training folds, next best if absent
    random_grade = float(np.mean(np.nanmean(grades, axis=1)))
    random_cost = float(np.mean((available * costs).sum(axis=1) / available.sum(axis=1)))
    baselines = [
        _point("best_single", grades, costs, best_choice),
        {"policy": "random", "budget": None, "mean_cost": random_cost, "mean_grade": random_grade},
    ]
    budget = cfg.router.budget if cfg.router.budget is not None else cfg.router.budget_share_of_best * costs[best]
    router_choice = route_budget(predicted, costs, budget, available)
    oracle_choice = route_budget(grades, costs, budget, available)
    cheap_point = single[cheapest]
    at_budget = {
        "router": _point("router", grades, costs, router_choice),
        "oracle": _point("oracle", grades, costs, oracle_choice),
    }
    # The same budget spent knowing only each model's mean grade: what prompt-specific predictions must beat.
    means_only = _point("means_only", grades, costs, route_budget(train_mean, costs, budget, available))
    oracle_free = _point("oracle", grades, costs, route_lambda(grades, costs, 0.0, available))
    gain = at_budget["oracle"]["mean_grade"] - cheap_point["mean_grade"]
    summary = {
        "prompts": len(grades),
        "quality": data.quality,
        "models": len(costs),
        "folds": cfg.cv.folds,
        "budget_per_prompt": float(budget),
        "best_single_model": data.models[best],
        "best_single": baselines[0],
        "cheapest_model": data.models[cheapest],
        "cheapest": cheap_point,
        "random": baselines[1],
        "oracle_unconstrained": oracle_free,
        "means_only_at_budget": means_only,
        "router_at_budget": at_budget["router"],
        "oracle_at_budget": at_budget["oracle"],
        "router_share_of_oracle_gain_at_budget": (at_budget["router"]["mean_grade"] - cheap_point["mean_grade"]) / gain
        if gain > 0
        else None,
        "means_only_share_of_oracle_gain_at_budget": (means_only["mean_grade"] - cheap_point["mean_grade"]) / gain
        if gain > 0
        else None,
        "router_share_of_unconstrained_oracle_gain": (at_budget["router"]["mean_grade"] - cheap_point["mean_grade"])
        / (oracle_free["mean_grade"] - cheap_point["mean_grade"]),
        "quality_rmse_oof": float(np.sqrt(np.nanmean((predicted - grades) ** 2))),
        "quality_rmse_model_mean": float(np.sqrt(np.nanmean((train_mean - grades) ** 2))),
    }
    decisions = pd.DataFrame(
        {
            "question_id": data.ids,
            "fold": folds,
            "router_model": np.array(data.models)[router_choice],
            "router_predicted": predicted[np.arange(len(grades)), router_choice],
            "router_grade": grades[np.arange(len(grades)), router_choice],
            "oracle_model": np.array(data.models)[oracle_choice],
            "oracle_grade": grades[np.arange(len(grades)), oracle_choice],
        }
    )
    for name, quality in (other_routers or {}).items():
        points += [_point(name, grades, costs, route_budget(quality, costs, b, available), budget=b) for b in budgets]
        choice = route_budget(quality, costs, budget, available)
        summary[f"{name}_at_budget"] = _point(name, grades, costs, choice)
        summary[f"{name}_share_of_oracle_gain_at_budget"] = (
            (summary[f"{name}_at_budget"]["mean_grade"] - cheap_point["mean_grade"]) / gain if gain > 0 else None
        )
        decisions[f"{name}_model"] = np.array(data.models)[choice]
        decisions[f"{name}_grade"] = grades[np.arange(len(grades)), choice]
    if per_query_routers:
        baseline = {"cheap": cheap_point["mean_grade"], "gain": gain}
        more, entries, columns = per_query_figures(
            per_query_routers, grades, costs, budgets, budget, baseline, cfg.cv.seed, data.models
        )
        points += more
        summary.update(entries)
        decisions = decisions.assign(**columns)
    return pd.DataFrame(points + single + baselines), summary, decisions


def route_new_prompts(data: GradedPrompts, X: np.ndarray, test: pd.DataFrame, cfg: RoutingConfig) -> pd.DataFrame:
    """Fit the quality model on every graded prompt and route the prompts of `test` (read from data.test)."""
    costs = cost_vector(data.models, load_costs(cfg), cfg.router.costs_file)
    quality = (
        PromptQuality(cfg.quality.alpha).fit(X, data.grades).predict(prompt_features(test["prompt"].tolist(), cfg.quality.embed))
    )
    if cfg.router.lam is not None:
        choice = route_lambda(quality, costs, cfg.router.lam)
    else:
        budget = (
            cfg.router.budget
            if cfg.router.budget is not None
            else cfg.router.budget_share_of_best * costs[int(np.argmax(np.nanmean(data.grades, axis=0)))]
        )
        choice = route_budget(quality, costs, budget)
    rows = np.arange(len(choice))
    return pd.DataFrame(
        {
            "id": test["id"],
            "model": np.array(data.models)[choice],
            "predicted_grade": quality[rows, choice],
            "cost": costs[choice],
        }
    )
