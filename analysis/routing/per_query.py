"""Randomized routers under a per-query cost limit (P2L's router), evaluated out of fold beside the batch ones.

A policy's figures are expectations over its own randomness: mean expected cost and mean expected grade, so the
curve does not depend on a draw. One seeded draw per prompt is reported too (decisions and `_drawn_at_budget`),
to show what a single pass over the prompts spends and gets. The per-query oracle is the same LP on the true
grades: what any per-query router could reach; the batch oracle (mean cost ≤ budget) can reach more.
"""

from __future__ import annotations

import numpy as np

from analysis.routing.router import draw_from_policy, route_per_query


def expected_point(name: str, grades: np.ndarray, costs: np.ndarray, policy: np.ndarray, budget: float | None = None) -> dict:
    achieved = np.nansum(policy * grades, axis=1)  # the policy puts no weight on a model without a graded answer
    return {"policy": name, "budget": budget, "mean_cost": float(np.mean(policy @ costs)), "mean_grade": float(np.mean(achieved))}


def per_query_figures(
    routers: dict[str, np.ndarray],
    grades: np.ndarray,
    costs: np.ndarray,
    budgets: np.ndarray,
    budget: float,
    baseline: dict,
    seed: int,
    models: list[str],
) -> tuple[list[dict], dict, dict[str, np.ndarray]]:
    """(curve points, summary entries, decision columns) of each randomized router and of the per-query oracle.

    `baseline` holds the cheapest model's mean grade (`cheap`) and the batch oracle's gain over it at the budget
    (`gain`): shares of that gain are comparable with the batch routers' shares."""
    available = ~np.isnan(grades)
    oracle = route_per_query(grades, costs, budget, available)
    points = [expected_point("oracle_per_query", grades, costs, route_per_query(grades, costs, b, available), b) for b in budgets]
    summary = {"oracle_per_query_at_budget": expected_point("oracle_per_query", grades, costs, oracle)}
    per_query_gain = summary["oracle_per_query_at_budget"]["mean_grade"] - baseline["cheap"]
    columns: dict[str, np.ndarray] = {}
    rows = np.arange(len(grades))
    for name, utility in routers.items():
        points += [expected_point(name, grades, costs, route_per_query(utility, costs, b, available), b) for b in budgets]
        policy = route_per_query(utility, costs, budget, available)
        at_budget = expected_point(name, grades, costs, policy)
        drawn = draw_from_policy(policy, np.random.default_rng(seed))
        summary[f"{name}_at_budget"] = at_budget
        summary[f"{name}_drawn_at_budget"] = {
            "policy": f"{name} (one draw)",
            "mean_cost": float(np.mean(costs[drawn])),
            "mean_grade": float(np.mean(grades[rows, drawn])),
        }
        summary[f"{name}_share_of_oracle_gain_at_budget"] = (
            (at_budget["mean_grade"] - baseline["cheap"]) / baseline["gain"] if baseline["gain"] > 0 else None
        )
        summary[f"{name}_share_of_per_query_oracle_gain_at_budget"] = (
            (at_budget["mean_grade"] - baseline["cheap"]) / per_query_gain if per_query_gain > 0 else None
        )
        columns[f"{name}_model"] = np.array(models)[drawn]
        columns[f"{name}_probability"] = policy[rows, drawn]
        columns[f"{name}_grade"] = grades[rows, drawn]
    return points, summary, columns
