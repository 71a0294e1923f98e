"""Adaptive comparisons after the insertion pass: the rest of a verdict budget goes where it sharpens the ranking
most (active ranking, which De-Arena's fixed window only approximates).

Repeatedly: the ratings and their covariance Σ come from the Bradley-Terry fit of every verdict so far (the
Fisher information of the "half" tie model, plus a weak N(0, 2²) prior so a model with one-sided results stays
finite). A model's rank is uncertain in proportion to its rating's variance times the density ρ_i of other
models around its rating, ρ_i = Σ_j φ(Δ_ij / s_ij) / s_ij with s_ij the sd of the difference, so the target is
Σ_i ρ_i² Var(r_i). Adding m verdicts to the pair (x, y) lowers Σ by c·Σu·uᵀΣ (u = e_x − e_y,
c = m·p(1−p) / (1 + m·p(1−p)·uᵀΣu)); among pairs at most `reach` places apart that have unjudged items, the
pairs with the largest drop per verdict get `step` fresh items each (several pairs per refit, no model twice),
and Bradley-Terry is refitted. A pair's fresh items are the next ones of its seeded sample, so no item is judged
twice.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from analysis.arena.procedure import Arena

PRIOR_PRECISION = 0.25  # N(0, 2²) on each rating, in logits


def items_used(arena: Arena) -> dict[tuple[str, str], int]:
    """(first, second) → items of the pair's sample judged so far (by any judge)."""
    used: dict[tuple[str, str], int] = {}
    for (first, second, _), n in arena.judged.items():
        used[(first, second)] = max(used.get((first, second), 0), n)
    return used


def rating_covariance(arena: Arena, models: list[str], ratings: np.ndarray) -> np.ndarray:
    """Covariance of the ratings of `models` from the verdicts used (inverse Fisher information plus the prior)."""
    index = {m: i for i, m in enumerate(models)}
    counts = np.zeros((len(models), len(models)))
    for (first, second, _), n in arena.judged.items():
        counts[index[first], index[second]] += n
    counts += counts.T
    p = expit(ratings[:, None] - ratings[None, :])
    information = -counts * p * (1 - p)
    np.fill_diagonal(information, -information.sum(axis=1) + PRIOR_PRECISION)
    return np.linalg.inv(information)


def rank_variance_drop(cov: np.ndarray, ratings: np.ndarray, i: np.ndarray, j: np.ndarray, added: np.ndarray) -> np.ndarray:
    """Per candidate pair (i[k], j[k]) given added[k] verdicts: the drop of Σ_m ρ_m² Var(r_m)."""
    sd = np.sqrt(np.maximum(np.diag(cov)[:, None] + np.diag(cov)[None, :] - 2 * cov, 1e-12))
    density = (norm.pdf((ratings[:, None] - ratings[None, :]) / sd) / sd).sum(axis=1) - norm.pdf(0.0) / np.diag(sd)
    p = expit(ratings[i] - ratings[j])
    spread = cov[:, i] - cov[:, j]  # Σu per candidate
    c = added * p * (1 - p) / (1 + added * p * (1 - p) * sd[i, j] ** 2)
    return c * ((density[:, None] ** 2) * spread**2).sum(axis=0)


def next_pairs(arena: Arena, reach: int, step: int, batch: int) -> list[tuple[str, str]]:
    """Up to `batch` pairs with no model in common, largest drop of rank variance per verdict first."""
    models = arena.ranked
    ratings = np.array([arena.ratings[m] for m in models])
    used = items_used(arena)
    i, j, added = [], [], []
    for a, x in enumerate(models):
        for b in range(a + 1, min(len(models), a + reach + 1)):
            left = len(arena.sample(x, models[b])) - used.get(tuple(sorted((x, models[b]))), 0)
            if left > 0:
                i.append(a), j.append(b), added.append(min(step, left))
    if not i:
        return []
    i, j, added = np.array(i), np.array(j), np.array(added, dtype=np.float64)
    gain = rank_variance_drop(rating_covariance(arena, models, ratings), ratings, i, j, added) / added
    chosen, busy = [], set()
    for k in np.argsort(-gain, kind="stable"):
        if len(chosen) == batch:
            break
        if i[k] not in busy and j[k] not in busy:
            chosen.append((models[i[k]], models[j[k]]))
            busy |= {i[k], j[k]}
    return chosen


def spend(arena: Arena, budget: int, step: int, reach: int = 5, batch: int = 6, progress=None) -> None:
    """Adaptive comparisons until `budget` verdicts are used (or no pair within reach has items left);
    `progress(arena)` is called after every refit."""
    while arena.judgments() < budget:
        pairs = next_pairs(arena, reach, step, batch)
        if not pairs:
            return
        for x, y in pairs:
            left = budget - arena.judgments()
            if left <= 0:
                break
            names = arena.eligible(x, y)
            extra = max(1, min(step, left // len(names)))
            arena.compare(x, y, items_used(arena).get(tuple(sorted((x, y))), 0) + extra, names)
        arena.resort()
        if progress is not None:
            progress(arena)
