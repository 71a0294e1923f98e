"""Bayesian logistic regression of "A wins" on property differences, by the Laplace approximation.

Prior: independent N(0, prior_sd²) on every effect (weakly informative on standardised differences). No
intercept: with antisymmetric differences and a judge without position bias, exchanging A and B negates x and
flips the outcome, so the posterior is unchanged by the exchange. The posterior mode is found with scipy's
L-BFGS on the exact log posterior and gradient; the covariance is the inverse Hessian there. With thousands of
pairs and a few dozen effects the logistic posterior is close to Gaussian; bench/dissection.py compares it with
an MCMC sampler (emcee).

Targets may be fractional (a tie half-weighted counts as 1/2 for each side; a model's predicted
p(a) / (p(a) + p(b)) as a judge): the likelihood is then the cross-entropy to the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

Z95 = stats.norm.ppf(0.975)


@dataclass(frozen=True)
class Posterior:
    names: list[str]
    mean: np.ndarray
    cov: np.ndarray
    n_pairs: float

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def table(self, scales: pd.Series | None = None) -> pd.DataFrame:
        """One row per property: effect (log-odds per standardised step), 95% interval, odds ratio and interval."""
        low, high = self.mean - Z95 * self.sd, self.mean + Z95 * self.sd
        out = pd.DataFrame(
            {
                "property": self.names,
                "effect": self.mean,
                "effect_low": low,
                "effect_high": high,
                "odds_ratio": np.exp(self.mean),
                "odds_ratio_low": np.exp(low),
                "odds_ratio_high": np.exp(high),
                "credible": (low > 0) | (high < 0),  # the 95% interval excludes no effect
            }
        )
        if scales is not None:
            out["one_step_is"] = scales.reindex(self.names).to_numpy()
        return out


def fit_posterior(
    x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, prior_sd: float = 2.5, names=None
) -> Posterior:
    """Posterior of β in P(A wins) = σ(x·β), β ~ N(0, prior_sd² I), with targets in [0, 1] and row weights."""
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    weight = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    precision = 1.0 / prior_sd**2

    def negative_log_posterior(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ beta
        # -[t log σ(z) + (1 - t) log σ(-z)] = log(1 + e^z) - t z, computed stably
        loss = np.sum(weight * (np.logaddexp(0.0, z) - target * z)) + 0.5 * precision * beta @ beta
        gradient = x.T @ (weight * (special.expit(z) - target)) + precision * beta
        return loss, gradient

    found = optimize.minimize(negative_log_posterior, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    p = special.expit(x @ found.x)
    hessian = (x * (weight * p * (1 - p))[:, None]).T @ x + precision * np.eye(x.shape[1])
    cov = np.linalg.inv(hessian)
    names = list(names) if names is not None else [f"x{i}" for i in range(x.shape[1])]
    return Posterior(names, found.x, (cov + cov.T) / 2, float(weight.sum()))


def clustered_covariance(
    x: np.ndarray,
    target: np.ndarray,
    posterior: Posterior,
    groups: np.ndarray,
    weight: np.ndarray | None = None,
    prior_sd: float = 2.5,
) -> np.ndarray:
    """The sandwich covariance H⁻¹ (Σ_g s_g s_gᵀ) H⁻¹ at the posterior mode, s_g the summed score of cluster g's rows.

    Pairs sharing a prompt are not independent evidence (the same answers recur in many pairs of a prompt); the
    Laplace covariance H⁻¹ treats them as if they were. With every row its own cluster and a well-specified
    model, the sandwich is close to H⁻¹; rows that copy each other within a cluster widen it by the copies' share."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    p = special.expit(x @ posterior.mean)
    hessian = (x * (weight * p * (1 - p))[:, None]).T @ x + np.eye(x.shape[1]) / prior_sd**2
    scores = x * (weight * (p - np.asarray(target, dtype=np.float64)))[:, None]
    _, cluster = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    summed = np.zeros((cluster.max() + 1, x.shape[1]))
    np.add.at(summed, cluster, scores)
    bread = np.linalg.inv(hessian)
    cov = bread @ (summed.T @ summed) @ bread
    return (cov + cov.T) / 2
