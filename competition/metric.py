"""The one metric: multi-class log loss computed exactly as Kaggle scores LMSYS."""

from __future__ import annotations

import numpy as np

from competition.labels import N_CLASSES

KAGGLE_EPS = 1e-15


def log_loss(y: np.ndarray, probs: np.ndarray, eps: float = KAGGLE_EPS) -> float:
    """Clip to [eps, 1 - eps], renormalise each row, mean negative log likelihood of the true class."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    y = np.asarray(y, dtype=np.int64)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(y)))


def class_prior(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=N_CLASSES).astype(np.float64)
    return counts / counts.sum()


def prior_log_loss(y: np.ndarray) -> float:
    """Log loss of predicting the class frequencies for every row: the floor any model must beat."""
    prior = class_prior(y)
    return log_loss(y, np.tile(prior, (len(y), 1)))


def score_report(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    loss, prior = log_loss(y, probs), prior_log_loss(y)
    return {"log_loss": loss, "accuracy": accuracy(y, probs), "prior_log_loss": prior, "skill": 1 - loss / prior}
