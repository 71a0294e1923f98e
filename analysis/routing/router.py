"""Routing decisions from a (prompts × models) quality matrix and a cost per model.

Three modes: maximise quality − λ·cost per prompt; maximise mean quality with mean cost ≤ budget; or P2L's
router, a randomized policy per prompt whose expected cost is ≤ a per-query limit.
The budget mode is the Lagrangian relaxation of that multiple-choice knapsack (the smallest λ whose
choices fit), then a greedy pass spends what is left on the upgrades with the best quality per cost.
Equal scores go to the cheaper model, so a perfect predictor reproduces the cheapest per-prompt oracle.
The per-query mode is P2L's "optimal LP" router: for each prompt, the distribution π over models maximising
π·u subject to π·c ≤ limit (u: expected win rate against an opponent distribution). With one cost constraint
its optimum mixes at most two models; a batch budget can move spending between prompts, a per-query limit
cannot, so at equal mean cost the batch router is at least as good in expectation on the same utilities.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

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


def route_per_query(utility: np.ndarray, costs: np.ndarray, limit: float, available: np.ndarray | None = None) -> np.ndarray:
    """(prompts, models) routing policy: per prompt, the distribution maximising expected utility with expected cost
    ≤ `limit`. Every prompt's LP is one block of a single sparse LP solved by HiGHS. A prompt whose cheapest
    answering model costs more than the limit gets that model (P2L refuses such a query; an evaluation cannot)."""
    utility = np.asarray(utility, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    prompts, models = utility.shape
    answered = np.ones_like(utility, dtype=bool) if available is None else np.asarray(available, dtype=bool)
    if not answered.any(axis=1).all():
        raise InputError("a prompt has no answering model to route to")
    cheapest = np.where(answered, costs[None, :], np.inf).min(axis=1)
    limits = np.maximum(float(limit), cheapest)
    result = linprog(
        -np.where(answered, utility, 0.0).ravel(),
        A_ub=sparse.kron(sparse.eye(prompts), costs[None, :], format="csr"),
        b_ub=limits,
        A_eq=sparse.kron(sparse.eye(prompts), np.ones((1, models)), format="csr"),
        b_eq=np.ones(prompts),
        bounds=np.column_stack([np.zeros(answered.size), np.where(answered.ravel(), None, 0.0)]),
        method="highs",
    )
    if result.status != 0:
        raise InputError(f"the per-query routing LP failed: {result.message}")
    policy = np.clip(result.x.reshape(prompts, models), 0.0, None)
    return _cheapest_equivalent(policy / policy.sum(axis=1, keepdims=True), utility, costs, answered)


def _cheapest_equivalent(policy: np.ndarray, utility: np.ndarray, costs: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """The policy with each model's weight moved to the cheapest answering model at least as useful: the LP is
    indifferent between equally useful models when the limit is slack, and the solver's pick is arbitrary."""
    useful = np.where(answered, utility, -np.inf)
    at_least = (useful[:, None, :] >= useful[:, :, None]) & answered[:, None, :]  # (prompt, model, candidate)
    replacement = np.argmin(np.where(at_least, costs[None, None, :], np.inf), axis=2)
    moved = np.zeros_like(policy)
    np.add.at(moved, (np.arange(len(policy))[:, None], replacement), policy)
    return moved


def draw_from_policy(policy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One model index per prompt drawn from its row of the policy."""
    cumulative = np.cumsum(policy, axis=1)
    drawn = (rng.random(len(policy))[:, None] * cumulative[:, -1:] >= cumulative).sum(axis=1)
    return np.minimum(drawn, policy.shape[1] - 1)
