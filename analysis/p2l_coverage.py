"""How often P2L's intervals for a new prompt cover the truth, in simulation.

A world where every prompt's Bradley-Terry coefficients are linear in its (standardised) columns,
θ(x) = θ₀ + W·x, with Davidson ties; battles are drawn per prompt from those coefficients. As train-p2l does,
one head per prompt-grouped fold is fitted on the other folds' prompts (the frozen estimator's own ridge head,
models/p2l/head.py, at a fixed penalty); for new prompts the point is the heads' mean and the interval is
`interval_half_width` of the delete-a-group jackknife error (analysis/p2l.py). Coverage is the share of
(new prompt, model) coefficients, centred per prompt, whose true value lies inside.
"""

from __future__ import annotations

import numpy as np

from analysis.p2l import interval_half_width, jackknife
from competition.folds import assign_folds
from models.bradley_terry import three_way
from models.p2l.head import Battles, fit_head, global_start, penalties


def simulated_battles(rng, X: np.ndarray, theta: np.ndarray, tie: float, per_prompt: int) -> Battles:
    prompts, models = theta.shape
    prompt = np.repeat(np.arange(prompts), per_prompt)
    a = rng.integers(0, models, len(prompt))
    b = (a + rng.integers(1, models, len(prompt))) % models  # never a model against itself
    probs = three_way(theta[prompt, a] - theta[prompt, b], np.full(len(prompt), tie), "davidson", 0.0)
    drawn = (rng.random(len(prompt))[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return Battles(prompt, a, b, np.array([1.0, 0.0, 0.5])[np.minimum(drawn, 2)])


def coverage_once(
    seed: int,
    prompts: int = 200,
    dims: int = 4,
    models: int = 6,
    per_prompt: int = 30,
    folds: int = 5,
    level: float = 0.95,
    spread: float = 0.4,
    l2: float = 1e-3,
    new_prompts: int = 40,
    quantile: str = "t",
) -> float:
    """Share of the new prompts' centred coefficients inside their intervals, in one simulated world."""
    rng = np.random.default_rng(seed)
    theta0, W = rng.normal(0, 0.6, models), rng.normal(0, spread, (dims, models))
    X, X_new = rng.normal(size=(prompts, dims)), rng.normal(size=(new_prompts, dims))
    battles = simulated_battles(rng, X, theta0 + X @ W, np.log(0.5), per_prompt)
    fold_of = assign_folds(None, np.arange(prompts).astype(str), folds, seed)
    penalty, tie_penalty = penalties((dims, 0), (l2, l2), 1.0)
    heads = []
    for fold in range(folds):
        rows = np.flatnonzero(fold_of[battles.prompt] != fold)
        part = battles.subset(rows)
        start = global_start(part, models, dims, "davidson")
        heads.append(fit_head(X, part, models, penalty, tie_penalty, "davidson", start, 2000))
    fold_theta = np.stack([head.coefficients(X_new)[0] for head in heads])  # (folds, new prompts, models), centred
    points, errors = jackknife(fold_theta)
    truth = theta0 + X_new @ W
    truth = truth - truth.mean(axis=1, keepdims=True)
    inside = {q: np.abs(points - truth) <= interval_half_width(errors, folds, level, q) for q in ("t", "normal")}
    return {q: float(np.mean(hit)) for q, hit in inside.items()}


def coverage(repeats: int, **world) -> dict[str, dict[str, float]]:
    """Per quantile: mean and sd of the coverage over `repeats` simulated worlds (seeds 0 .. repeats - 1)."""
    worlds = [coverage_once(seed, **world) for seed in range(repeats)]
    return {
        q: {"mean": float(np.mean([w[q] for w in worlds])), "sd": float(np.std([w[q] for w in worlds], ddof=1))}
        for q in worlds[0]
    }
