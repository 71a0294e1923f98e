import numpy as np
import pytest

from competition.folds import prompt_groups
from competition.labels import swap_labels, swap_probabilities
from competition.metric import log_loss, prior_log_loss
from data.loader import load_arena_csv
from features.paired import swap_features
from features.registry import FeatureConfig, build_features
from models.lgbm import LGBMConfig, LGBMPreference

FAST = LGBMConfig(max_rounds=60, early_stopping_rounds=10, min_data_in_leaf=5, num_threads=1)
GROUPS = FeatureConfig(("lengths", "markdown"), cache_dir=None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.conftest import make_arena_frame

    path = tmp_path_factory.mktemp("d") / "train.csv"
    make_arena_frame(n_prompts=20, rows_per_prompt=10).to_csv(path, index=False)
    frame = load_arena_csv(path, require_labels=True)
    frame["group"] = prompt_groups(frame)
    return build_features(frame, ("lengths", "markdown")), frame["label"].to_numpy(), frame["group"].to_numpy()


def test_predictions_are_symmetric_under_swap(data):
    X, y, groups = data
    model = LGBMPreference(FAST, GROUPS).fit(X, y, groups)
    direct = model.predict_proba(X)
    exchanged = model.predict_proba(swap_features(X))
    np.testing.assert_allclose(swap_probabilities(direct), exchanged, atol=1e-12)


def test_without_swap_average_symmetry_is_not_forced(data):
    X, y, groups = data
    model = LGBMPreference(LGBMConfig(**{**FAST.__dict__, "swap_augment": False, "swap_average": False}), GROUPS).fit(
        X, y, groups
    )
    assert not np.allclose(swap_probabilities(model.predict_proba(X)), model.predict_proba(swap_features(X)))


def test_learns_the_synthetic_signal_on_held_out_prompts(data):
    X, y, groups = data
    held_prompts = np.unique(groups)[:6]
    held = np.isin(groups, held_prompts)
    model = LGBMPreference(FAST, GROUPS).fit(X[~held], y[~held], groups[~held])
    probs = model.predict_proba(X[held])
    assert probs.shape == (int(held.sum()), 3)
    assert log_loss(y[held], probs) < prior_log_loss(y[held]) - 0.05


def test_save_load_roundtrip(data, tmp_path):
    X, y, groups = data
    model = LGBMPreference(FAST, GROUPS).fit(X, y, groups)
    model.save(tmp_path)
    loaded = LGBMPreference.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.columns_ == list(X.columns)


def test_swap_labels_pairs_with_swapped_features(data):
    _, y, _ = data
    assert np.array_equal(swap_labels(swap_labels(y)), y)
