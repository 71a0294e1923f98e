"""Bradley-Terry: recovers simulated strengths, intervals cover at about the nominal rate, invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from models.bradley_terry import TIE_MODELS, BradleyTerry, aggregate, three_way

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
