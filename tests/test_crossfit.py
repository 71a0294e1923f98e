"""The one cross-fit loop: no validation prompt is ever trained on, folds are stratified, finished folds
resume from disk, and the blender's cross-fitting cannot learn a fold's weights from that fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.crossfit import FoldStore, cross_fit
from competition.errors import InputError
from competition.folds import assign_folds, fold_table
from competition.metric import log_loss
from ensemble.blend import cross_fitted_blend


class SpyEstimator:
    """Predicts the training class frequencies; remembers what each instance was fitted on."""

    fitted: list[set] = []

    def __init__(self, fold: int):
        self.fold = fold

    def fit(self, frame, y, groups):
        SpyEstimator.fitted.append((self.fold, set(groups), set(frame["id"])))
        self.prior_ = np.bincount(y, minlength=3) / len(y)
        self.fit_facts_ = {"seen": len(y)}
        return self

    def predict_proba(self, frame):
        return np.tile(self.prior_, (len(frame), 1))

    def save(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "estimator.json").write_text('{"family": "spy"}')

    @classmethod
    def load(cls, directory):
        raise AssertionError("not needed")


def synthetic(n_prompts=40, rows=5, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{i}" for i in range(n_prompts)], rows)
    y = rng.choice(3, size=len(groups), p=[0.4, 0.4, 0.2])
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(groups))], "group": groups})
    return frame, y, groups


def test_no_fold_model_ever_trains_on_a_validation_prompt():
    frame, y, groups = synthetic()
    folds = assign_folds(y, pd.Series(groups), 5, seed=1)
    SpyEstimator.fitted = []
    result = cross_fit(SpyEstimator, frame, y, folds, groups)
    assert [f for f, _, _ in SpyEstimator.fitted] == [0, 1, 2, 3, 4]
    for fold, fit_groups, fit_ids in SpyEstimator.fitted:
        assert not fit_groups & set(groups[folds == fold])
        assert not fit_ids & set(frame["id"][folds == fold])
        assert fit_groups | set(groups[folds == fold]) == set(groups)  # and every other prompt is used
    assert result.scored.all() and list(result.fold_scores["seen"]) == [int((folds != f).sum()) for f in range(5)]


def test_folds_are_label_stratified_within_tolerance():
    frame, y, groups = synthetic(n_prompts=200, rows=4, seed=2)
    folds = assign_folds(y, pd.Series(groups), 5, seed=3)
    overall = np.bincount(y, minlength=3) / len(y)
    for fold in range(5):
        share = np.bincount(y[folds == fold], minlength=3) / (folds == fold).sum()
        assert np.abs(share - overall).max() < 0.03, (fold, share, overall)
        assert abs((folds == fold).mean() - 0.2) < 0.02


def test_fold_table_is_written_once_and_read_back(tmp_path):
    frame, y, groups = synthetic()
    first = fold_table(frame["id"], groups, y, 5, 7, tmp_path)
    written = list(tmp_path.glob("*.parquet"))
    assert len(written) == 1
    stamp = written[0].stat().st_mtime_ns
    again = fold_table(frame["id"], groups, y, 5, 7, tmp_path)
    assert again.equals(first) and written[0].stat().st_mtime_ns == stamp
    other = fold_table(frame["id"], groups, y, 4, 7, tmp_path)  # other settings: another table
    assert len(list(tmp_path.glob("*.parquet"))) == 2 and other["fold"].max() == 3
    with pytest.raises(InputError, match="distinct prompts"):
        fold_table(frame["id"][:10], groups[:10], y[:10], 5, 7, None)


def test_finished_folds_resume_from_the_store_without_refitting(tmp_path):
    frame, y, groups = synthetic()
    folds = assign_folds(y, pd.Series(groups), 4, seed=0)
    store = FoldStore(tmp_path / "folds")
    SpyEstimator.fitted = []
    first = cross_fit(SpyEstimator, frame, y, folds, groups, only_folds=[0, 2], store=store)
    assert [f for f, _, _ in SpyEstimator.fitted] == [0, 2]
    SpyEstimator.fitted = []
    second = cross_fit(SpyEstimator, frame, y, folds, groups, store=store)
    assert [f for f, _, _ in SpyEstimator.fitted] == [1, 3]  # 0 and 2 were read back
    np.testing.assert_array_equal(second.oof[first.scored], first.oof[first.scored])
    assert second.scored.all()


def test_blend_cross_fitting_does_not_learn_a_folds_weights_from_that_fold():
    """Model P is perfect on fold 0 and confidently wrong elsewhere; Q is mediocre everywhere. Weights fitted
    with fold 0 inside would favour P on fold 0; cross-fitted weights must come from the other folds only."""
    rng = np.random.default_rng(0)
    n = 1000
    y = rng.choice(3, size=n)
    folds = np.arange(n) % 5
    truth = np.eye(3)[y]
    wrong = np.eye(3)[(y + 1) % 3]
    perfect_on_fold0 = np.where((folds == 0)[:, None], 0.98 * truth + 0.01, 0.9 * wrong + 0.05)
    mediocre = 0.5 * truth + 0.5 / 3
    out = cross_fitted_blend([perfect_on_fold0, mediocre], y, folds)
    held = folds == 0
    assert log_loss(y[held], out[held]) > 0.8 * log_loss(y[held], mediocre[held])
