import numpy as np
import pytest

from competition.metric import log_loss
from ensemble.blend import BlendWeights, apply_blend, cross_fitted_blend, fit_blend_weights, honest_blend_folds


def _truth(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([2, 2, 1], size=n)
    y = np.array([rng.choice(3, p=row) for row in p])
    return p, y


def test_known_answer_puts_weight_on_the_true_model():
    p, y = _truth()
    uniform = np.full_like(p, 1 / 3)
    weights = fit_blend_weights([uniform, p], y)
    assert weights.weights[1] > 0.9
    assert weights.weights.sum() == pytest.approx(1)


def test_mixture_recovers_the_mixing_weight():
    p, y = _truth(n=20000, seed=1)
    rng = np.random.default_rng(2)
    noise = rng.dirichlet([1, 1, 1], size=len(p))
    # The truth is 0.7 p + 0.3 noise: a blend of the two parts should find about 0.7 / 0.3.
    mixed_truth = 0.7 * p + 0.3 * noise
    y = np.array([rng.choice(3, p=row) for row in mixed_truth])
    weights = fit_blend_weights([p, noise], y)
    assert weights.weights[0] == pytest.approx(0.7, abs=0.06)


def test_temperature_fixes_overconfidence():
    p, y = _truth(seed=3)
    sharp = p**3 / (p**3).sum(axis=1, keepdims=True)
    blend = fit_blend_weights([sharp], y, fit_temperature=True)
    assert blend.temperature > 1.5
    assert log_loss(y, apply_blend([sharp], blend)) < log_loss(y, sharp)


def test_blend_never_worse_than_best_single_in_sample():
    p, y = _truth(seed=4)
    rng = np.random.default_rng(5)
    a = 0.8 * p + 0.2 * rng.dirichlet([1, 1, 1], size=len(p))
    b = 0.8 * p + 0.2 * rng.dirichlet([1, 1, 1], size=len(p))
    weights = fit_blend_weights([a, b], y)
    assert log_loss(y, apply_blend([a, b], weights)) <= min(log_loss(y, a), log_loss(y, b)) + 1e-9


def test_cross_fitted_blend_shape_and_rows():
    p, y = _truth(n=600)
    folds = np.arange(len(y)) % 5
    out = cross_fitted_blend([p, np.full_like(p, 1 / 3)], y, folds)
    assert out.shape == p.shape and np.allclose(out.sum(axis=1), 1)


def test_apply_blend_is_a_convex_combination():
    a = np.array([[1.0, 0.0, 0.0]])
    b = np.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(apply_blend([a, b], BlendWeights(np.array([0.25, 0.75]))), [[0.25, 0.75, 0.0]])


def test_one_shared_fold_is_cross_fitted_on_prompt_grouped_sub_folds():
    p, y = _truth(n=400, seed=6)
    groups = np.repeat(np.arange(80), 5).astype(str)
    sub_folds = honest_blend_folds(y, np.zeros(len(y), dtype=int), groups)
    assert sub_folds is not None and len(np.unique(sub_folds)) == 5
    for group in np.unique(groups):
        assert len(np.unique(sub_folds[groups == group])) == 1
    out = cross_fitted_blend([p, np.full_like(p, 1 / 3)], y, sub_folds)
    assert np.allclose(out.sum(axis=1), 1) and log_loss(y, out) < log_loss(y, np.full_like(p, 1 / 3))


def test_honest_folds_keep_the_runs_folds_and_refuse_a_single_fold_without_groups():
    y = np.arange(30) % 3
    folds = np.arange(30) % 3
    assert honest_blend_folds(y, folds, None) is folds
    assert honest_blend_folds(y, np.zeros(30, dtype=int), None) is None
    assert honest_blend_folds(y, np.zeros(30, dtype=int), np.full(30, "same")) is None
    with pytest.raises(ValueError, match="two folds"):
        cross_fitted_blend([np.full((30, 3), 1 / 3)], y, np.zeros(30, dtype=int))
