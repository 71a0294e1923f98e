"""Bayesian logistic regression of "A wins" on property differences: P(A wins) = σ(x·β), no intercept.

No intercept: with antisymmetric differences and a judge without position bias, exchanging A and B negates x and
flips the outcome, so the posterior is unchanged by the exchange (GAIR's regression has none either).

Two priors, independent on every effect (log-odds per standardised step):
- `normal` (the default): N(0, sd²), sd 2.5, weakly informative. It is not GAIR's. The posterior is the Laplace
  approximation: the mode by scipy's L-BFGS on the exact log posterior and gradient, the covariance the inverse
  Hessian there. With thousands of pairs and a few dozen effects the logistic posterior is close to Gaussian;
  bench/dissection.py compares it with MCMC draws.
- `laplace`: Laplace(0, b), GAIR's prior (b = 0.1 in their code, on annotations in {-1, 0, 1}; NUTS, 4 chains of
  500 warm-up and 2,000 draws, the posterior mean reported). Its log density −|β|/b has a kink at 0, where an
  effect the data hardly support sits: the posterior has no Hessian there and is not Gaussian, so the Laplace
  approximation is wrong. It is sampled instead, with emcee's affine-invariant ensemble (needs no gradient, so
  the kink does no harm; seeded, so a rerun draws the same): effects are posterior means, intervals the 2.5 and
  97.5 % quantiles of the draws.

Targets may be fractional (a tie half-weighted counts as 1/2 for each side; a model's predicted
p(a) / (p(a) + p(b)) as a judge): the likelihood is then the cross-entropy to the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

Z95 = stats.norm.ppf(0.975)
PRIORS = ("normal", "laplace")


@dataclass(frozen=True)
class Prior:
    family: str = "normal"  # one of PRIORS
    scale: float = 2.5  # normal: its sd; laplace: its scale b (sd = b√2)

    @property
    def sd(self) -> float:
        return self.scale if self.family == "normal" else self.scale * math.sqrt(2.0)

    def log_density(self, betas: np.ndarray) -> np.ndarray:
        """Log prior of each row of `betas` (walkers × effects), up to a constant."""
        if self.family == "normal":
            return -0.5 * (betas**2).sum(axis=-1) / self.scale**2
        return -np.abs(betas).sum(axis=-1) / self.scale

    def describe(self) -> str:
        if self.family == "normal":
            return f"normal N(0, {self.scale:g}²) on each effect, no intercept; posterior by the Laplace approximation"
        return f"laplace Laplace(0, {self.scale:g}) on each effect (GAIR's family), no intercept; posterior sampled (emcee)"


@dataclass(frozen=True)
class Posterior:
    names: list[str]
    mean: np.ndarray
    cov: np.ndarray
    n_pairs: float
    draws: np.ndarray | None = None  # sampled posteriors: draws × effects; intervals are their quantiles
    autocorrelation_steps: float | None = None  # sampled: the longest integrated autocorrelation time, in steps

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def table(self, scales: pd.Series | None = None) -> pd.DataFrame:
        """One row per property: effect (log-odds per standardised step), 95% interval, odds ratio and interval."""
        if self.draws is None:
            low, high = self.mean - Z95 * self.sd, self.mean + Z95 * self.sd
        else:
            low, high = np.quantile(self.draws, [0.025, 0.975], axis=0)
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


def as_arrays(x, target, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    weight = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    return x, np.asarray(target, dtype=np.float64), weight


def negative_log_posterior(
    beta: np.ndarray, x: np.ndarray, target: np.ndarray, weight: np.ndarray, precision: float
) -> tuple[float, np.ndarray]:
    """(−log posterior up to a constant, its gradient) under the normal prior of the given precision (1 / sd²)."""
    z = x @ beta
    # -[t log σ(z) + (1 - t) log σ(-z)] = log(1 + e^z) - t z, computed stably
    loss = np.sum(weight * (np.logaddexp(0.0, z) - target * z)) + 0.5 * precision * beta @ beta
    return loss, row_scores(beta, x, target, weight).sum(axis=0) + precision * beta


def row_scores(beta: np.ndarray, x: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Gradient of each row's negative log likelihood (rows × effects)."""
    return x * (weight * (special.expit(x @ beta) - target))[:, None]


def posterior_hessian(beta: np.ndarray, x: np.ndarray, weight: np.ndarray, precision: float) -> np.ndarray:
    """Hessian of `negative_log_posterior` at beta."""
    p = special.expit(x @ beta)
    return (x * (weight * p * (1 - p))[:, None]).T @ x + precision * np.eye(x.shape[1])


def fit_posterior(
    x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, prior_sd: float = 2.5, names=None
) -> Posterior:
    """Laplace approximation of β's posterior in P(A wins) = σ(x·β), β ~ N(0, prior_sd² I), targets in [0, 1]."""
    x, target, weight = as_arrays(x, target, weight)
    precision = 1.0 / prior_sd**2
    found = optimize.minimize(
        negative_log_posterior, np.zeros(x.shape[1]), args=(x, target, weight, precision), jac=True, method="L-BFGS-B"
    )
    cov = np.linalg.inv(posterior_hessian(found.x, x, weight, precision))
    names = list(names) if names is not None else [f"x{i}" for i in range(x.shape[1])]
    return Posterior(names, found.x, (cov + cov.T) / 2, float(weight.sum()))


def sample_posterior(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    prior: Prior = Prior("laplace", 0.1),
    steps: int = 2000,
    seed: int = 0,
    names=None,
) -> Posterior:
    """β's posterior under any prior, drawn by emcee's ensemble sampler; the second half of every walker's chain."""
    import emcee
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    x, target, weight = as_arrays(x, target, weight)
    weighted_target = weight * target

    def log_posterior(betas: np.ndarray) -> np.ndarray:  # all walkers at once
        z = x @ betas.T
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))  # log(1 + e^z), stably; 4× np.logaddexp's speed
        return weighted_target @ z - weight @ softplus + prior.log_density(betas)

    # started around the normal prior's mode with the same sd: inside the bulk, so half the chain is ample burn-in
    guide = fit_posterior(x, target, weight, prior.sd)
    walkers = max(4 * x.shape[1], 32)
    start = guide.mean + 0.1 * guide.sd * np.random.default_rng(seed).standard_normal((walkers, x.shape[1]))
    sampler = emcee.EnsembleSampler(walkers, x.shape[1], log_posterior, vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()
    with threadpool_limits(1):  # rows × walkers/2 products: BLAS threads cost more than they save
        sampler.run_mcmc(start, steps, progress=False)
    draws = sampler.get_chain(discard=steps // 2, flat=True)
    # tol=0: the estimate is reported (bench/dissection.py), not refused for a chain shorter than 50 of it
    tau = float(np.max(emcee.autocorr.integrated_time(sampler.get_chain(discard=steps // 2), tol=0)))
    names = list(names) if names is not None else [f"x{i}" for i in range(x.shape[1])]
    cov = np.atleast_2d(np.cov(draws, rowvar=False))
    return Posterior(names, draws.mean(axis=0), cov, float(weight.sum()), draws=draws, autocorrelation_steps=tau)


def posterior(x, target, weight, prior: Prior, mcmc_steps: int, names=None) -> Posterior:
    """The normal prior's Laplace approximation, or draws under the Laplace prior (module docstring)."""
    if prior.family == "normal":
        return fit_posterior(x, target, weight, prior.scale, names)
    return sample_posterior(x, target, weight, prior, mcmc_steps, names=names)


def clustered_covariance(
    x: np.ndarray,
    target: np.ndarray,
    posterior: Posterior,
    groups: np.ndarray,
    weight: np.ndarray | None = None,
    prior_sd: float = 2.5,
) -> np.ndarray:
    """The sandwich covariance H⁻¹ (Σ_g s_g s_gᵀ + P) H⁻¹ at the posterior mode, s_g the summed score of cluster g's
    rows and P the prior's precision.

    Pairs sharing a prompt are not independent evidence (the same answers recur in many pairs of a prompt); the
    Laplace covariance H⁻¹ treats them as if they were. The prior is one more independent source of evidence whose
    score varies by its precision, so it enters the meat as P as well as the bread: an effect the data say nothing
    about keeps the prior's width (H = P, meat P), and with every row its own cluster and a well-specified model
    the sandwich is the Laplace covariance H⁻¹; rows that copy each other within a cluster widen it by the copies'
    share."""
    x, target, weight = as_arrays(x, target, weight)
    scores = row_scores(posterior.mean, x, target, weight)
    _, cluster = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    summed = np.zeros((cluster.max() + 1, x.shape[1]))
    np.add.at(summed, cluster, scores)
    prior_precision = 1.0 / prior_sd**2
    bread = np.linalg.inv(posterior_hessian(posterior.mean, x, weight, prior_precision))
    cov = bread @ (summed.T @ summed + prior_precision * np.eye(x.shape[1])) @ bread
    return (cov + cov.T) / 2
