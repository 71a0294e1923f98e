"""Bradley-Terry ratings by maximum likelihood: ties, a tie parameter, style covariates, intervals.

The linear predictor of a battle is d = r[a] - r[b] + x·β (x: optional style covariates). Tie models:
- "half": a tie counts as half a win for each side, P(a) = σ(d) (Chatbot Arena's choice);
- "rao-kupper": P(a) = σ(d - η), P(b) = σ(-d - η), the rest is a tie (η > 0);
- "davidson": P(a), P(b), P(tie) ∝ exp(d/2), exp(-d/2), ν.
Ratings are identified up to a shift: the first model is fixed at 0 while fitting, then all are centred
(mean 0), which is also arena-rank's gauge. Intervals: the sandwich estimator H⁻¹ G H⁻¹ (robust to a
misspecified tie model) and the percentile bootstrap over battles.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logsumexp

TIE_MODELS = ("half", "rao-kupper", "davidson")
SCALE, BASE = 400.0, 10.0
ELO_PER_LOGIT = SCALE / np.log(BASE)  # one logit is 173.7 rating points


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def row_terms(d: np.ndarray, t: float, outcome: np.ndarray, tie_model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per battle: log likelihood, its derivative in d and in the raw tie parameter t."""
    if tie_model == "half":
        return outcome * d - _softplus(d), outcome - expit(d), np.zeros_like(d)
    win_a, win_b = outcome == 1.0, outcome == 0.0
    if tie_model == "rao-kupper":
        eta = np.exp(t)  # t = log η keeps η > 0 without bounds
        ll_a, ll_b = -_softplus(eta - d), -_softplus(d + eta)
        ll_t = np.log(np.expm1(2 * eta)) + d - np.logaddexp(d, eta) - np.logaddexp(eta + d, 0.0)
        g_d = np.where(win_a, expit(eta - d), np.where(win_b, -expit(d + eta), 1 - expit(d - eta) - expit(eta + d)))
        g_eta = np.where(
            win_a, -expit(eta - d), np.where(win_b, -expit(d + eta), 2 / -np.expm1(-2 * eta) - expit(eta - d) - expit(eta + d))
        )
        return np.where(win_a, ll_a, np.where(win_b, ll_b, ll_t)), g_d, g_eta * eta
    if tie_model == "davidson":
        logits = np.stack([d / 2, -d / 2, np.full_like(d, t)], axis=1)
        log_p = logits - logsumexp(logits, axis=1, keepdims=True)
        p = np.exp(log_p)
        tie = ~(win_a | win_b)
        ll = np.where(win_a, log_p[:, 0], np.where(win_b, log_p[:, 1], log_p[:, 2]))
        g_d = 0.5 * (win_a.astype(float) - win_b) - 0.5 * (p[:, 0] - p[:, 1])
        return ll, g_d, tie - p[:, 2]
    raise ValueError(f"unknown tie model {tie_model!r} (known: {', '.join(TIE_MODELS)})")


def three_way(d: np.ndarray, t: float, tie_model: str, tie_rate: float) -> np.ndarray:
    """(n, 3) probabilities a, b, tie. The "half" model has no tie term: it uses the training tie rate."""
    if tie_model == "half":
        p_a = expit(d)
        return np.stack([(1 - tie_rate) * p_a, (1 - tie_rate) * (1 - p_a), np.full_like(d, tie_rate)], axis=1)
    if tie_model == "rao-kupper":
        eta = np.exp(t)
        p_a, p_b = expit(d - eta), expit(-d - eta)
        return np.stack([p_a, p_b, 1 - p_a - p_b], axis=1)
    logits = np.stack([d / 2, -d / 2, np.full_like(d, t)], axis=1)
    return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))


class BradleyTerry:
    """Scikit-learn-like: `fit(a, b, outcome, weight, covariates)` returns self; ratings in logits.

    `a`, `b`: model indices in [0, n_models); `outcome`: 1 (a wins), 0 (b wins), 0.5 (tie; for "half"
    any fraction in [0, 1] is allowed); `weight`: battle counts (rows with equal (a, b, outcome) may be
    aggregated); `covariates`: (n, k) style differences (A minus B), standardised inside.
    """

    def __init__(self, n_models: int, tie_model: str = "half", l2: float = 0.0, max_iter: int = 2000):
        if tie_model not in TIE_MODELS:
            raise ValueError(f"unknown tie model {tie_model!r} (known: {', '.join(TIE_MODELS)})")
        self.n_models, self.tie_model, self.l2, self.max_iter = n_models, tie_model, l2, max_iter

    # parameter vector z = (r[1:], t, β); r[0] = 0 while fitting
    def _unpack(self, z: np.ndarray, k: int) -> tuple[np.ndarray, float, np.ndarray]:
        n = self.n_models
        return np.concatenate([[0.0], z[: n - 1]]), float(z[n - 1]), z[n : n + k]

    def _predictor(self, r, beta, a, b, x):
        d = r[a] - r[b]
        return d if x is None else d + x @ beta

    def _objective(self, z, a, b, outcome, w, x):
        k = 0 if x is None else x.shape[1]
        r, t, beta = self._unpack(z, k)
        ll, g_d, g_t = row_terms(self._predictor(r, beta, a, b, x), t, outcome, self.tie_model)
        total = w.sum()
        wg = w * g_d
        grad_r = np.bincount(a, wg, self.n_models) - np.bincount(b, wg, self.n_models)
        grad = np.concatenate([grad_r[1:], [np.sum(w * g_t)], [] if x is None else x.T @ wg])
        loss = -np.sum(w * ll) / total + 0.5 * self.l2 * (r @ r)
        grad = -grad / total
        grad[: self.n_models - 1] += self.l2 * r[1:]
        return loss, grad

    def fit(self, a, b, outcome, weight=None, covariates=None, start: np.ndarray | None = None) -> BradleyTerry:
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        outcome = np.asarray(outcome, dtype=np.float64)
        weight = np.ones(len(a)) if weight is None else np.asarray(weight, dtype=np.float64)
        x = None
        if covariates is not None:
            covariates = np.asarray(covariates, dtype=np.float64)
            self.covariate_mean_ = covariates.mean(axis=0)
            self.covariate_scale_ = np.where(covariates.std(axis=0) > 0, covariates.std(axis=0), 1.0)
            x = (covariates - self.covariate_mean_) / self.covariate_scale_
        if self.tie_model != "half" and not np.isin(outcome, (0.0, 0.5, 1.0)).all():
            raise ValueError(f"tie model {self.tie_model!r} needs outcomes 0, 0.5 or 1")
        k = 0 if x is None else x.shape[1]
        t0 = {"half": 0.0, "rao-kupper": np.log(0.3), "davidson": np.log(0.5)}[self.tie_model]
        z0 = np.concatenate([np.zeros(self.n_models - 1), [t0], np.zeros(k)]) if start is None else start
        self._fit_standardised(a, b, outcome, weight, x, z0)
        r, t, beta = self._unpack(self.z_, k)
        self.ratings_ = r - r.mean()
        self.tie_param_ = None if self.tie_model == "half" else float(np.exp(t))  # η (Rao-Kupper) or ν (Davidson)
        self.coefs_ = beta
        self.tie_rate_ = float(np.sum(weight * (outcome == 0.5)) / weight.sum())
        self._data = (a, b, outcome, weight, x)
        return self

    def predict_proba(self, a, b, covariates=None) -> np.ndarray:
        """(n, 3) probabilities of a win for a, for b, and a tie."""
        x = (
            None
            if covariates is None
            else (np.asarray(covariates, dtype=np.float64) - self.covariate_mean_) / self.covariate_scale_
        )
        d = self._predictor(self.ratings_, self.coefs_, np.asarray(a), np.asarray(b), x)
        t = 0.0 if self.tie_param_ is None else np.log(self.tie_param_)
        return three_way(d, t, self.tie_model, self.tie_rate_)

    def elo(self, anchor: float = 1000.0) -> np.ndarray:
        return anchor + ELO_PER_LOGIT * self.ratings_

    def _scores(self, z: np.ndarray) -> np.ndarray:
        """(rows, p) score of each battle (one copy of the row) with respect to z."""
        a, b, outcome, _, x = self._data
        k = 0 if x is None else x.shape[1]
        r, t, beta = self._unpack(z, k)
        _, g_d, g_t = row_terms(self._predictor(r, beta, a, b, x), t, outcome, self.tie_model)
        n, rows = self.n_models, np.arange(len(a))
        scores = np.zeros((len(a), len(z)))
        scores[rows[a > 0], a[a > 0] - 1] = g_d[a > 0]
        scores[rows[b > 0], b[b > 0] - 1] = -g_d[b > 0]
        scores[:, n - 1] = g_t
        if x is not None:
            scores[:, n:] = g_d[:, None] * x
        return scores

    def sandwich_covariance(self, step: float = 1e-5) -> np.ndarray:
        """Covariance of (centred ratings, raw tie parameter, β) by H⁻¹ G H⁻¹ over battles.

        H: Hessian of the summed negative log likelihood (central differences of the exact gradient);
        G: sum over battles of score outer products (aggregated rows count `weight` times).
        """
        a, b, outcome, w, x = self._data
        total, p = w.sum(), len(self.z_)
        hessian = np.empty((p, p))
        for j in range(p):
            e = np.zeros(p)
            e[j] = step
            g_plus = self._objective(self.z_ + e, a, b, outcome, w, x)[1]
            g_minus = self._objective(self.z_ - e, a, b, outcome, w, x)[1]
            hessian[:, j] = (g_plus - g_minus) * total / (2 * step)
        hessian = (hessian + hessian.T) / 2
        if self.tie_model == "half":  # t does not enter the likelihood: keep H invertible
            hessian[self.n_models - 1, self.n_models - 1] = 1.0
        scores = self._scores(self.z_)
        meat = scores.T @ (w[:, None] * scores)
        bread = np.linalg.pinv(hessian)
        free = bread @ meat @ bread
        n = self.n_models
        to_centred = np.zeros((p + 1, p))  # centred ratings (n), then t and β
        embed = np.vstack([np.zeros((1, n - 1)), np.eye(n - 1)])
        to_centred[:n, : n - 1] = (np.eye(n) - 1.0 / n) @ embed
        to_centred[n:, n - 1 :] = np.eye(p - n + 1)
        self.covariance_ = to_centred @ free @ to_centred.T
        return self.covariance_

    def bootstrap_ratings(self, rounds: int, seed: int, progress=None) -> np.ndarray:
        """(rounds, n_models) centred ratings refitted on battles resampled with replacement."""
        a, b, outcome, w, x = self._data
        total = int(round(w.sum()))
        rng = np.random.default_rng(seed)
        draws = np.empty((rounds, self.n_models))
        iterator = range(rounds) if progress is None else progress(range(rounds), "bootstrap")
        for i in iterator:
            counts = rng.multinomial(total, w / w.sum()).astype(np.float64)
            keep = counts > 0
            refit = BradleyTerry(self.n_models, self.tie_model, self.l2, self.max_iter)
            refit._fit_standardised(a[keep], b[keep], outcome[keep], counts[keep], None if x is None else x[keep], self.z_)
            r = np.concatenate([[0.0], refit.z_[: self.n_models - 1]])
            draws[i] = r - r.mean()
        return draws

    def _fit_standardised(self, a, b, outcome, weight, x, start) -> None:
        result = minimize(
            self._objective,
            start,
            args=(a, b, outcome, weight, x),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "ftol": 1e-14, "gtol": 1e-10},
        )
        self.z_, self.converged_ = result.x, bool(result.success)


def aggregate(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, weight: np.ndarray | None = None):
    """Battles with the same (a, b, outcome) merged into one row with summed weight: the fit gets faster, not different."""
    weight = np.ones(len(a)) if weight is None else np.asarray(weight, dtype=np.float64)
    keys = np.stack([a, b, np.round(np.asarray(outcome) * 1e6)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weight, len(unique))
    return unique[:, 0].astype(np.int64), unique[:, 1].astype(np.int64), unique[:, 2] / 1e6, summed
