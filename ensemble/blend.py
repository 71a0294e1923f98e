"""Blend weights fitted on out-of-fold log loss: non-negative, summing to 1, plus an optional temperature.

Weights are a softmax of free parameters, so the simplex constraint needs no constrained solver;
the temperature divides the log of the blended probabilities (T > 1 softens, T < 1 sharpens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import softmax

from competition.folds import assign_folds
from competition.labels import as_probabilities
from competition.metric import log_loss


@dataclass(frozen=True)
class BlendWeights:
    weights: np.ndarray  # one per model, >= 0, summing to 1
    temperature: float = 1.0


def apply_blend(probs: list[np.ndarray], blend: BlendWeights) -> np.ndarray:
    mixed = np.tensordot(blend.weights, np.stack([as_probabilities(p) for p in probs]), axes=1)
    if blend.temperature == 1.0:
        return as_probabilities(mixed)
    return as_probabilities(softmax(np.log(np.clip(mixed, 1e-15, 1)) / blend.temperature, axis=1))


def fit_blend_weights(probs: list[np.ndarray], y: np.ndarray, fit_temperature: bool = False) -> BlendWeights:
    """Minimises the log loss of the weighted mean of the models' probabilities."""
    n_models = len(probs)
    stacked = [as_probabilities(p) for p in probs]

    def unpack(theta: np.ndarray) -> BlendWeights:
        return BlendWeights(softmax(theta[:n_models]), float(np.exp(theta[n_models])) if fit_temperature else 1.0)

    def loss(theta: np.ndarray) -> float:
        return log_loss(y, apply_blend(stacked, unpack(theta)))

    start = np.zeros(n_models + (1 if fit_temperature else 0))
    if n_models == 1 and not fit_temperature:
        return BlendWeights(np.ones(1))
    best = minimize(loss, start, method="L-BFGS-B")
    # Two models with near-identical probabilities leave a flat valley; round tiny weights away.
    found = unpack(best.x)
    weights = np.where(found.weights < 1e-4, 0.0, found.weights)
    return BlendWeights(weights / weights.sum(), found.temperature)


def honest_blend_folds(y: np.ndarray, folds: np.ndarray, groups: np.ndarray | None, n_sub_folds: int = 5) -> np.ndarray | None:
    """The folds to cross-fit blend weights on: the runs' own folds when they share two or more; else
    prompt-grouped sub-folds of the shared rows (e.g. a one-fold transformer run blended with a 5-fold one);
    None when neither exists (no prompt groups in the files, or fewer than two prompts)."""
    if len(np.unique(folds)) >= 2:
        return folds
    if groups is None:
        return None
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        return None
    return assign_folds(y, pd.Series(groups), min(n_sub_folds, n_groups), seed=0)


def cross_fitted_blend(probs: list[np.ndarray], y: np.ndarray, folds: np.ndarray, fit_temperature: bool = False) -> np.ndarray:
    """Out-of-fold blend: each fold's rows blended with weights fitted on the other folds.

    Its log loss is the honest figure; the in-sample blend loss is optimistic by construction.
    """
    if len(np.unique(folds)) < 2:
        raise ValueError("cross-fitting needs at least two folds (see honest_blend_folds)")
    out = np.zeros((len(y), 3))
    for fold in np.unique(folds):
        held = folds == fold
        weights = fit_blend_weights([p[~held] for p in probs], y[~held], fit_temperature)
        out[held] = apply_blend([p[held] for p in probs], weights)
    return out
