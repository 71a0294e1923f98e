"""The frozen encoder's head: standardised prompt columns x → one Bradley-Terry coefficient per model and a tie
parameter, θ(x) = θ₀ + W·x and t(x) = t₀ + w·x, fitted by L-BFGS on the battles' likelihood.

The likelihood is the leaderboard's own (`row_terms`, Davidson or Rao-Kupper ties) with the coefficient
difference and tie parameter of each battle's prompt. θ₀, t₀ start at the global Bradley-Terry fit; ridge
penalties on W and w pull a prompt unlike any seen back to the global leaderboard. Coefficients are
identified up to a shift per prompt; the likelihood's gradient sums to zero over models, so a centred start
stays centred. The penalty is chosen among candidates by prompt-grouped inner folds of the training rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from competition.folds import inner_fold_predictions
from competition.metric import log_loss
from models.bradley_terry import BradleyTerry, aggregate, row_terms, three_way

OUTCOME_OF_LABEL = np.array([1.0, 0.0, 0.5])  # a wins, b wins, tie


@dataclass
class Battles:
    """Battles by index: the prompt row of each (into the prompt matrix), both models, the outcome for a."""

    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray

    def subset(self, rows: np.ndarray) -> Battles:
        return Battles(self.prompt[rows], self.a[rows], self.b[rows], self.outcome[rows])


@dataclass
class LinearHead:
    bias: np.ndarray  # (K,) the global coefficients
    tie_bias: float
    weights: np.ndarray  # (d, K)
    tie_weights: np.ndarray  # (d,)

    def coefficients(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) coefficients centred per prompt, (n,) raw tie parameter (log ν, or log η for Rao-Kupper)."""
        theta = self.bias + X @ self.weights
        return theta - theta.mean(axis=1, keepdims=True), self.tie_bias + X @ self.tie_weights

    def to_vector(self) -> np.ndarray:
        return np.concatenate([self.bias, [self.tie_bias], self.weights.ravel(), self.tie_weights])

    @classmethod
    def from_vector(cls, z: np.ndarray, n_models: int, dims: int) -> LinearHead:
        k, split = n_models, n_models + 1 + dims * n_models
        return cls(z[:k], float(z[k]), z[k + 1 : split].reshape(dims, k), z[split:])


def global_start(battles: Battles, n_models: int, dims: int, tie_model: str) -> LinearHead:
    """The global leaderboard (the leaderboard's Bradley-Terry on every training battle) with zero prompt weights."""
    fit = BradleyTerry(n_models, tie_model).fit(*aggregate(battles.a, battles.b, battles.outcome))
    return LinearHead(fit.ratings_.copy(), float(np.log(fit.tie_param_)), np.zeros((dims, n_models)), np.zeros(dims))


def head_objective(z, X, battles: Battles, n_models: int, penalty: np.ndarray, tie_penalty: np.ndarray, tie_model: str):
    """Mean negative log likelihood per battle plus the ridge terms, and its gradient."""
    n, dims = X.shape
    head = LinearHead.from_vector(z, n_models, dims)
    theta = head.bias + X @ head.weights
    tie = head.tie_bias + X @ head.tie_weights
    flat_a, flat_b = battles.prompt * n_models + battles.a, battles.prompt * n_models + battles.b
    d = theta.ravel()[flat_a] - theta.ravel()[flat_b]
    ll, g_d, g_t = row_terms(d, tie[battles.prompt], battles.outcome, tie_model)
    count = len(d)
    # d(mean log likelihood)/dθ per (prompt, model) and d/dt per prompt
    g_theta = (np.bincount(flat_a, g_d, n * n_models) - np.bincount(flat_b, g_d, n * n_models)).reshape(n, n_models) / count
    g_tie = np.bincount(battles.prompt, g_t, n) / count
    loss = -ll.mean() + 0.5 * np.sum(penalty[:, None] * head.weights**2) + 0.5 * np.sum(tie_penalty * head.tie_weights**2)
    grad = np.concatenate(
        [
            -g_theta.sum(axis=0),
            [-g_tie.sum()],
            (-(X.T @ g_theta) + penalty[:, None] * head.weights).ravel(),
            -(X.T @ g_tie) + tie_penalty * head.tie_weights,
        ]
    )
    return loss, grad


def fit_head(
    X: np.ndarray,
    battles: Battles,
    n_models: int,
    penalty: np.ndarray,
    tie_penalty: np.ndarray,
    tie_model: str,
    start: LinearHead,
    max_iter: int,
) -> LinearHead:
    result = minimize(
        head_objective,
        start.to_vector(),
        args=(X, battles, n_models, penalty, tie_penalty, tie_model),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-9},
    )
    return LinearHead.from_vector(result.x, n_models, X.shape[1])


def battle_probabilities(head: LinearHead, X: np.ndarray, battles: Battles, tie_model: str) -> np.ndarray:
    theta, tie = head.coefficients(X)
    p = battles.prompt
    return three_way(theta[p, battles.a] - theta[p, battles.b], tie[p], tie_model, 0.0)


def penalties(block_sizes: tuple[int, int], l2: tuple[float, float], tie_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ridge of the embedding block and the registry block, and the tie head's (`tie_ratio` times stronger)."""
    penalty = np.concatenate([np.full(block_sizes[0], l2[0]), np.full(block_sizes[1], l2[1])])
    return penalty, tie_ratio * penalty


def choose_penalty(
    X: np.ndarray,
    battles: Battles,
    n_models: int,
    block_sizes: tuple[int, int],
    grid: list[tuple[float, float]],
    tie_ratio: float,
    tie_model: str,
    inner_folds: int,
    seed: int,
    max_iter: int,
) -> tuple[tuple[float, float], pd.DataFrame]:
    """The (embedding, registry) penalty with the lowest log loss on prompt-grouped inner folds, and every candidate's loss."""
    labels = np.select([battles.outcome == 1.0, battles.outcome == 0.0], [0, 1], 2)
    if len(grid) == 1:
        return grid[0], pd.DataFrame({"l2_embedding": [grid[0][0]], "l2_features": [grid[0][1]], "inner_log_loss": [np.nan]})
    starts: dict[int, LinearHead] = {}
    rows = []
    for l2 in grid:
        penalty, tie_penalty = penalties(block_sizes, l2, tie_ratio)

        def fit_predict(fold: int, fit: np.ndarray, held: np.ndarray, penalty=penalty, tie_penalty=tie_penalty) -> np.ndarray:
            fitted = battles.subset(fit)
            if fold not in starts:  # the penalty-free start of an inner fold serves every candidate penalty
                starts[fold] = global_start(fitted, n_models, X.shape[1], tie_model)
            head = fit_head(X, fitted, n_models, penalty, tie_penalty, tie_model, starts[fold], max_iter)
            return battle_probabilities(head, X, battles.subset(held), tie_model)

        probs = inner_fold_predictions(battles.prompt, inner_folds, seed, fit_predict, "the penalty choice")
        rows.append({"l2_embedding": l2[0], "l2_features": l2[1], "inner_log_loss": log_loss(labels, probs)})
    table = pd.DataFrame(rows)
    best = table.loc[table["inner_log_loss"].idxmin()]
    return (float(best["l2_embedding"]), float(best["l2_features"])), table
