"""Routing decisions from a (prompts × models) quality matrix and a cost per model.

Two modes: maximise quality − λ·cost per prompt, or maximise mean quality with mean cost ≤ budget.
The budget mode is the Lagrangian relaxation of that multiple-choice knapsack (the smallest λ whose
choices fit), then a greedy pass spends what is left on the upgrades with the best quality per cost.
Equal scores go to the cheaper model, so a perfect predictor reproduces the cheapest per-prompt oracle.
"""

from __future__ import annotations

import numpy as np

from competition.errors import InputError


def _masked(quality: np.ndarray, available: np.ndarray | None) -> np.ndarray:
    quality = np.asarray(quality, dtype=np.float64)
    return quality if available is None else np.where(available, quality, -np.inf)


def route_lambda(quality: np.ndarray, costs: np.ndarray, lam: float, available: np.ndarray | None = None) -> np.ndarray:
    """Model index per prompt maximising quality − lam·cost; ties go to the cheaper model."""
    costs = np.asarray(costs, dtype=np.float64)
    by_cost = np.argsort(costs, kind="stable")
    score = _masked(quality, available) - lam * costs
    return by_cost[np.argmax(score[:, by_cost], axis=1)]


def mean_cost(choice: np.ndarray, costs: np.ndarray) -> float:
    return float(np.mean(np.asarray(costs)[choice]))


def route_budget(
    quality: np.ndarray, costs: np.ndarray, budget: float, available: np.ndarray | None = None, steps: int = 60
) -> np.ndarray:
    """Model index per prompt with mean cost ≤ budget and (near-)maximal mean predicted quality."""
    costs = np.asarray(costs, dtype=np.float64)
    quality = _masked(quality, available)
    free = route_lambda(quality, costs, 0.0)
    if mean_cost(free, costs) <= budget:
        return free
    cheapest = np.argmin(np.where(np.isfinite(quality), costs[None, :], np.inf), axis=1)
    if mean_cost(cheapest, costs) > budget + 1e-12:
        raise InputError(f"budget {budget:g} per prompt is below the cheapest possible routing ({mean_cost(cheapest, costs):g})")
    # Above this λ every prompt takes its cheapest model: no quality gap can pay for the smallest cost step.
    finite = quality[np.isfinite(quality)]
    steps_in_cost = np.diff(np.unique(costs))
    high = 2 * (finite.max() - finite.min() + 1.0) / (steps_in_cost.min() if len(steps_in_cost) else 1.0)
    low = 0.0
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if mean_cost(route_lambda(quality, costs, mid), costs) > budget else (low, mid)
    return _spend_leftover(quality, costs, budget, route_lambda(quality, costs, high))


def _spend_leftover(quality: np.ndarray, costs: np.ndarray, budget: float, choice: np.ndarray) -> np.ndarray:
    """Greedy upgrades by quality gained per extra cost, while the total stays within budget."""
    choice = choice.copy()
    rows = np.arange(len(choice))
    left = budget * len(choice) - costs[choice].sum()
    gain = quality - quality[rows, choice][:, None]
    extra = costs[None, :] - costs[choice][:, None]
    ratio = np.where((gain > 0) & (extra > 0), gain / np.where(extra > 0, extra, 1.0), -np.inf)
    best = np.argmax(ratio, axis=1)
    for row in np.argsort(-ratio[rows, best]):
        if not np.isfinite(ratio[row, best[row]]):
            break
        if extra[row, best[row]] <= left + 1e-12:
            left -= extra[row, best[row]]
            choice[row] = best[row]
    return choice
