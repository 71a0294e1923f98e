import numpy as np
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss

from competition.labels import as_probabilities, one_hot, swap_labels, swap_probabilities
from competition.metric import accuracy, log_loss, prior_log_loss


@pytest.mark.parametrize("seed", range(5))
def test_log_loss_matches_sklearn_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=200)
    y[:3] = [0, 1, 2]
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=200)
    assert log_loss(y, probs) == pytest.approx(sklearn_log_loss(y, probs, labels=[0, 1, 2]), rel=1e-9)


def test_log_loss_clips_and_renormalises_like_kaggle():
    y = np.array([0, 1])
    probs = np.array([[0.0, 1.0, 0.0], [0.2, 0.2, 0.4]])  # a zero on the truth, and a row summing to 0.8
    eps = 1e-15
    first = np.clip([0.0, 1.0, 0.0], eps, 1 - eps)
    expected = -(np.log(first[0] / first.sum()) + np.log(0.25)) / 2
    assert log_loss(y, probs) == pytest.approx(expected)


def test_hand_computed_value():
    assert log_loss(np.array([2]), np.array([[0.25, 0.25, 0.5]])) == pytest.approx(np.log(2))


def test_prior_and_accuracy():
    y = np.array([0, 0, 1, 2])
    assert prior_log_loss(y) == pytest.approx(-(2 * np.log(0.5) + 2 * np.log(0.25)) / 4)
    assert accuracy(y, one_hot(np.array([0, 1, 1, 2]))) == 0.75


def test_swaps_are_involutions():
    y = np.array([0, 1, 2, 1])
    assert list(swap_labels(y)) == [1, 0, 2, 0]
    p = as_probabilities(np.array([[0.7, 0.2, 0.1]]))
    assert np.allclose(swap_probabilities(p), [[0.2, 0.7, 0.1]])
    assert np.allclose(swap_probabilities(swap_probabilities(p)), p)


def test_probability_contract_rejects_bad_shapes():
    with pytest.raises(ValueError):
        as_probabilities(np.ones((3, 2)))
    with pytest.raises(ValueError):
        as_probabilities(np.array([[np.nan, 1, 1]]))
