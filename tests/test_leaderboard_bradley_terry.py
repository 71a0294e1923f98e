"""Bradley-Terry: recovers simulated strengths, intervals cover at about the nominal rate, invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from models import bradley_terry
from models.bradley_terry import TIE_MODELS, BradleyTerry, aggregate, row_curvature, row_terms, three_way

TRUE_TIE = {"half": 0.0, "rao-kupper": np.log(0.4), "davidson": np.log(0.6)}


def simulate(strengths, n_battles, tie_model, seed, covariates=None, beta=None):
    """Battles drawn from the tie model itself; outcome 1 = a wins, 0 = b wins, 0.5 = tie."""
    rng = np.random.default_rng(seed)
    n = len(strengths)
    a = rng.integers(0, n, n_battles)
    b = (a + rng.integers(1, n, n_battles)) % n
    d = strengths[a] - strengths[b] + (0 if covariates is None else covariates @ beta)
    if tie_model == "half":
        return a, b, (rng.random(n_battles) < 1 / (1 + np.exp(-d))).astype(float)
    probs = three_way(d, TRUE_TIE[tie_model], tie_model, 0.0)
    klass = (rng.random(n_battles)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return a, b, np.array([1.0, 0.0, 0.5])[np.minimum(klass, 2)]


def centred(x):
    return x - x.mean()


STRENGTHS = centred(np.array([-1.2, -0.5, 0.0, 0.3, 0.9, 1.6]))


@pytest.mark.parametrize("tie_model", TIE_MODELS)
def test_recovers_known_strengths_and_tie_parameter(tie_model):
    a, b, y = simulate(STRENGTHS, 30000, tie_model, seed=1)
    model = BradleyTerry(len(STRENGTHS), tie_model).fit(*aggregate(a, b, y))
    assert model.converged_
    assert np.abs(model.ratings_ - STRENGTHS).max() < 0.08
    if tie_model != "half":
        assert model.tie_param_ == pytest.approx(np.exp(TRUE_TIE[tie_model]), rel=0.08)


def test_aggregated_rows_fit_the_same_as_single_battles():
    a, b, y = simulate(STRENGTHS, 3000, "davidson", seed=2)
    single = BradleyTerry(len(STRENGTHS), "davidson").fit(a, b, y)
    merged = BradleyTerry(len(STRENGTHS), "davidson").fit(*aggregate(a, b, y))
    assert np.allclose(single.ratings_, merged.ratings_, atol=1e-5)
    assert np.allclose(single.sandwich_covariance(), merged.sandwich_covariance(), atol=1e-6)


@pytest.mark.parametrize("tie_model", TIE_MODELS)
def test_invariant_to_relabelling_models_and_to_swapping_sides(tie_model):
    a, b, y = simulate(STRENGTHS, 4000, tie_model, seed=3)
    base = BradleyTerry(len(STRENGTHS), tie_model).fit(a, b, y)
    perm = np.random.default_rng(0).permutation(len(STRENGTHS))  # model i is called perm[i]
    relabelled = BradleyTerry(len(STRENGTHS), tie_model).fit(perm[a], perm[b], y)
    assert np.allclose(relabelled.ratings_[perm], base.ratings_, atol=1e-5)
    swapped = BradleyTerry(len(STRENGTHS), tie_model).fit(b, a, 1.0 - y)
    assert np.allclose(swapped.ratings_, base.ratings_, atol=1e-5)
    probs = base.predict_proba(a[:50], b[:50])
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(base.predict_proba(b[:50], a[:50]), probs[:, [1, 0, 2]], atol=1e-9)


def test_sandwich_and_bootstrap_intervals_cover_at_about_the_nominal_rate():
    """90% intervals over 5 models; 30 simulated data sets for the sandwich, 10 for the bootstrap."""
    z = norm.ppf(0.95)
    strengths = centred(np.array([-0.8, -0.2, 0.1, 0.4, 0.5]))
    hits_sandwich, hits_boot = [], []
    for seed in range(30):
        a, b, y = simulate(strengths, 1500, "half", seed=100 + seed)
        model = BradleyTerry(len(strengths)).fit(*aggregate(a, b, y))
        se = np.sqrt(np.diag(model.sandwich_covariance())[: len(strengths)])
        hits_sandwich.extend(np.abs(model.ratings_ - strengths) <= z * se)
        if seed < 10:
            draws = model.bootstrap_ratings(60, seed)
            lower, upper = np.quantile(draws, [0.05, 0.95], axis=0)
            hits_boot.extend((lower <= strengths) & (strengths <= upper))
    assert 0.82 <= np.mean(hits_sandwich) <= 0.97, np.mean(hits_sandwich)
    assert 0.76 <= np.mean(hits_boot) <= 0.99, np.mean(hits_boot)


def test_sandwich_matches_bootstrap_spread():
    a, b, y = simulate(STRENGTHS, 5000, "rao-kupper", seed=4)
    model = BradleyTerry(len(STRENGTHS), "rao-kupper").fit(*aggregate(a, b, y))
    se = np.sqrt(np.diag(model.sandwich_covariance())[: len(STRENGTHS)])
    spread = model.bootstrap_ratings(80, seed=5).std(axis=0)
    assert np.allclose(se, spread, rtol=0.35)


def test_style_control_removes_a_confounding_covariate():
    """Strong models also write longer answers here; with the length difference as a covariate the
    ratings return to the strengths and the coefficient to its true value."""
    rng = np.random.default_rng(6)
    n_battles = 20000
    a = rng.integers(0, 6, n_battles)
    b = (a + rng.integers(1, 6, n_battles)) % 6
    length = STRENGTHS + rng.normal(0, 1, (n_battles, 6))  # per battle, per model
    x = (length[np.arange(n_battles), a] - length[np.arange(n_battles), b])[:, None]
    d = STRENGTHS[a] - STRENGTHS[b] + 0.8 * x[:, 0]
    y = (rng.random(n_battles) < 1 / (1 + np.exp(-d))).astype(float)
    plain = BradleyTerry(6).fit(a, b, y)
    styled = BradleyTerry(6).fit(a, b, y, covariates=x)
    assert np.abs(styled.ratings_ - STRENGTHS).max() < 0.1
    assert np.abs(plain.ratings_ - STRENGTHS).max() > 0.3
    assert styled.coefs_[0] / styled.covariate_scale_[0] == pytest.approx(0.8, rel=0.1)


def test_fractional_outcomes_fit_a_predicted_win_matrix():
    """Prompt leaderboards fit "half" to predicted probabilities: exact BT probabilities give back the strengths."""
    i, j = np.triu_indices(len(STRENGTHS), 1)
    p = 1 / (1 + np.exp(-(STRENGTHS[i] - STRENGTHS[j])))
    model = BradleyTerry(len(STRENGTHS)).fit(i, j, p)
    assert np.allclose(model.ratings_, STRENGTHS, atol=1e-4)
    with pytest.raises(ValueError):
        BradleyTerry(len(STRENGTHS), "davidson").fit(i, j, p)


@pytest.mark.parametrize("tie_model", TIE_MODELS)
def test_curvature_is_the_derivative_of_the_gradient(tie_model):
    """row_curvature against central differences of row_terms' exact first derivatives, in d and in t."""
    d = np.linspace(-4, 4, 9).repeat(3)
    outcome = np.tile([1.0, 0.0, 0.5], 9)
    t, step = TRUE_TIE[tie_model] + 0.2, 1e-6
    h_dd, h_dt, h_tt = row_curvature(d, t, outcome, tie_model)
    _, g_d_up, g_t_up = row_terms(d + step, t, outcome, tie_model)
    _, g_d_down, g_t_down = row_terms(d - step, t, outcome, tie_model)
    assert np.allclose(h_dd, (g_d_up - g_d_down) / (2 * step), atol=1e-7)
    assert np.allclose(h_dt, (g_t_up - g_t_down) / (2 * step), atol=1e-7)
    _, g_d_up, g_t_up = row_terms(d, t + step, outcome, tie_model)
    _, g_d_down, g_t_down = row_terms(d, t - step, outcome, tie_model)
    assert np.allclose(h_dt, (g_d_up - g_d_down) / (2 * step), atol=1e-7)
    assert np.allclose(h_tt, (g_t_up - g_t_down) / (2 * step), atol=1e-7)


@pytest.mark.parametrize("tie_model", TIE_MODELS)
def test_newton_reaches_the_optimum_lbfgs_approaches(tie_model):
    """Same ratings as the L-BFGS optimiser (kept as the fallback) with a gradient at rounding level; a ridge
    and style covariates included."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4000, 2))
    a, b, y = simulate(STRENGTHS, 4000, tie_model, seed=8, covariates=x, beta=np.array([0.3, -0.2]))
    model = BradleyTerry(len(STRENGTHS), tie_model, l2=1e-3).fit(a, b, y, covariates=x)
    data = model._data
    gradient = model._objective(model.z_, data[0], data[1], data[2], data[3], data[4])[1]
    assert model.converged_ and np.abs(gradient).max() < 1e-12
    lbfgs, converged = model._lbfgs(data[3], np.zeros_like(model.z_))
    assert converged and np.abs(lbfgs - model.z_).max() < 1e-5


def test_sandwich_equals_the_finite_difference_sandwich():
    """Exact Hessian and sparse meat against central differences of the gradient and dense per-battle scores
    (how intervals were computed before)."""
    a, b, y = simulate(STRENGTHS, 3000, "rao-kupper", seed=9)
    model = BradleyTerry(len(STRENGTHS), "rao-kupper", l2=0.01).fit(*aggregate(a, b, y))
    a, b, y, w, _ = model._data
    exact = model.sandwich_covariance()
    p, step = len(model.z_), 1e-5
    hessian = np.empty((p, p))
    for j in range(p):
        e = np.zeros(p)
        e[j] = step
        up, down = model._objective(model.z_ + e, a, b, y, w, None)[1], model._objective(model.z_ - e, a, b, y, w, None)[1]
        hessian[:, j] = (up - down) * w.sum() / (2 * step)
    _, g_d, g_t = row_terms(model.ratings_[a] - model.ratings_[b], model.z_[-1], y, "rao-kupper")
    scores = np.zeros((len(a), p))  # each battle's score in z = (r[1:], t), dense
    for side, sign in ((a, 1.0), (b, -1.0)):
        rows = np.flatnonzero(side > 0)
        scores[rows, side[rows] - 1] += sign * g_d[rows]
    scores[:, -1] = g_t
    meat = scores.T @ (w[:, None] * scores)
    bread = np.linalg.pinv((hessian + hessian.T) / 2)
    n = len(STRENGTHS)
    to_centred = np.zeros((p + 1, p))
    to_centred[:n, : n - 1] = (np.eye(n) - 1.0 / n) @ np.vstack([np.zeros((1, n - 1)), np.eye(n - 1)])
    to_centred[n:, n - 1 :] = np.eye(p - n + 1)
    assert np.allclose(exact, to_centred @ bread @ meat @ bread @ to_centred.T, rtol=1e-5, atol=1e-9)


def test_bootstrap_replicas_equal_fits_on_the_resampled_battles():
    """Reweighting the fitted design from the full fit's optimum = fitting each resample from scratch."""
    a, b, y = simulate(STRENGTHS, 2000, "davidson", seed=10)
    a, b, y, w = aggregate(a, b, y)
    model = BradleyTerry(len(STRENGTHS), "davidson").fit(a, b, y, w)
    draws = model.bootstrap_ratings(3, seed=11)
    rng = np.random.default_rng(11)
    for draw in draws:
        counts = rng.multinomial(int(w.sum()), w / w.sum()).astype(float)
        keep = counts > 0
        refit = BradleyTerry(len(STRENGTHS), "davidson").fit(a[keep], b[keep], y[keep], counts[keep])
        assert np.abs(draw - refit.ratings_).max() < 1e-8


def test_newton_hands_over_to_lbfgs_when_it_does_not_converge(monkeypatch):
    monkeypatch.setattr(bradley_terry, "NEWTON_STEPS", 1)
    a, b, y = simulate(STRENGTHS, 2000, "rao-kupper", seed=12)
    model = BradleyTerry(len(STRENGTHS), "rao-kupper").fit(*aggregate(a, b, y))
    start = np.r_[np.zeros(len(STRENGTHS) - 1), np.log(0.3)]
    assert model.converged_ and np.array_equal(model.z_, model._lbfgs(model._data[3], start)[0])


def test_an_unbeaten_model_leaves_the_others_ratings_among_themselves_unchanged():
    """Model 0 never loses: its maximum-likelihood rating is infinite. Newton stops, as L-BFGS does, where the
    gradient falls under tolerance, a different far-away point; the other models compare as under L-BFGS."""
    a, b, y = simulate(STRENGTHS, 2000, "half", seed=12)
    y = np.where(a == 0, 1.0, np.where(b == 0, 0.0, y))
    model = BradleyTerry(len(STRENGTHS)).fit(*aggregate(a, b, y))
    lbfgs, _ = model._lbfgs(model._data[3], np.zeros_like(model.z_))
    others = slice(0, len(STRENGTHS) - 1)  # z holds r[1:] - r[0]
    assert model.z_[others].max() < -15 and lbfgs[others].max() < -15
    assert np.allclose(model.z_[others] - model.z_[0], lbfgs[others] - lbfgs[0], atol=1e-6)


def test_aggregate_equals_merging_by_sorted_unique_rows():
    rng = np.random.default_rng(13)
    a, b = rng.integers(0, 6, 5000), rng.integers(0, 6, 5000)
    y, w = rng.choice([0.0, 0.25, 0.5, 1.0], 5000), rng.random(5000)
    unique, inverse = np.unique(np.stack([a, b, np.round(y * 1e6)], axis=1), axis=0, return_inverse=True)
    merged = aggregate(a, b, y, w)
    assert np.array_equal(merged[0], unique[:, 0]) and np.array_equal(merged[1], unique[:, 1])
    assert np.array_equal(merged[2], unique[:, 2] / 1e6)
    assert np.allclose(merged[3], np.bincount(inverse.ravel(), w, len(unique)), rtol=1e-12)


def test_the_bootstrap_resamples_battles_not_units_of_weight():
    """Weights that are not battle counts (a judge's crowd weight) scale the likelihood, not the number of
    battles: with counts given, weight 5 on every battle gives the same bootstrap as weight 1; counting the
    weights as battles would draw 5× as many and shrink the intervals by √5."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 300)
    b = (a + rng.integers(1, 4, 300)) % 4
    outcome = (rng.random(300) < 0.5 + 0.1 * (a - b)).astype(float)
    unit = BradleyTerry(4).fit(a, b, outcome).bootstrap_ratings(30, seed=1)
    heavy = BradleyTerry(4).fit(a, b, outcome, np.full(300, 5.0), counts=np.ones(300)).bootstrap_ratings(30, seed=1)
    assert np.allclose(heavy, unit, atol=1e-8)
    as_counts = BradleyTerry(4).fit(a, b, outcome, np.full(300, 5.0)).bootstrap_ratings(30, seed=1)
    assert as_counts.std(axis=0).mean() < 0.6 * unit.std(axis=0).mean()  # weights read as counts: too narrow
