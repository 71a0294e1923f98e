"""Blend weights fitted on out-of-fold log loss: non-negative, summing to 1, plus an optional temperature.

Weights are a softmax of free parameters, so the simplex constraint needs no constrained solver;
the temperature divides the log of the blended probabilities (T > 1 softens, T < 1 sharpens).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import softmax

from competition.crossfit import cross_fit
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


def apply_blend_available(probs: list[np.ndarray], blend: BlendWeights) -> tuple[np.ndarray, np.ndarray]:
    """`apply_blend` where every model has a row's probabilities; where some are missing (NaN: a time budget ran
    out before they were scored), the weights of the models present, renormalised. Returns (probabilities, mask of
    the rows blended from fewer models). Rows no model scored stay NaN."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    present = ~np.isnan(stacked).any(axis=2)  # (models, rows)
    out = np.full(stacked.shape[1:], np.nan)
    for pattern in {tuple(column) for column in present.T}:
        rows = np.flatnonzero((present.T == pattern).all(axis=1))
        chosen = np.flatnonzero(pattern)
        weight = blend.weights[chosen].sum()
        if len(chosen) and weight > 0:
            partial = blend if len(chosen) == len(probs) else BlendWeights(blend.weights[chosen] / weight, blend.temperature)
            out[rows] = apply_blend([stacked[m, rows] for m in chosen], partial)
    return out, ~present.all(axis=0)


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


def probability_frame(probs: list[np.ndarray]) -> pd.DataFrame:
    """Several models' (n, 3) probabilities side by side: the frame a `WeightedBlend` reads."""
    columns = {f"model{i}__{k}": p[:, k] for i, p in enumerate(probs) for k in range(3)}
    return pd.DataFrame({"id": np.arange(len(probs[0])).astype(str), **columns})


def _split_models(frame: pd.DataFrame) -> list[np.ndarray]:
    n_models = sum(1 for c in frame.columns if c.endswith("__0"))
    return [frame[[f"model{i}__{k}" for k in range(3)]].to_numpy(dtype=np.float64) for i in range(n_models)]


class WeightedBlend:
    """The blender with the project's estimator face, so its cross-fitting runs through the one loop."""

    def __init__(self, fit_temperature: bool = False):
        self.fit_temperature = fit_temperature

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups=None) -> WeightedBlend:
        self.weights_ = fit_blend_weights(_split_models(frame), np.asarray(y), self.fit_temperature)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return apply_blend(_split_models(frame), self.weights_)

    def save(self, directory) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"family": "blend", "weights": self.weights_.weights.tolist(), "temperature": self.weights_.temperature}
        (directory / "estimator.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory) -> WeightedBlend:
        meta = json.loads((Path(directory) / "estimator.json").read_text(encoding="utf-8"))
        blend = cls(meta["temperature"] != 1.0)
        blend.weights_ = BlendWeights(np.asarray(meta["weights"], dtype=np.float64), float(meta["temperature"]))
        return blend


def cross_fitted_blend(probs: list[np.ndarray], y: np.ndarray, folds: np.ndarray, fit_temperature: bool = False) -> np.ndarray:
    """Out-of-fold blend: each fold's rows blended with weights fitted on the other folds.

    Its log loss is the honest figure; the in-sample blend loss is optimistic by construction.
    """
    folds = np.asarray(folds)
    if len(np.unique(folds)) < 2:
        raise ValueError("cross-fitting needs at least two folds (see honest_blend_folds)")
    codes = np.unique(folds, return_inverse=True)[1]
    result = cross_fit(lambda fold: WeightedBlend(fit_temperature), probability_frame(probs), y, codes, codes)
    return result.oof
