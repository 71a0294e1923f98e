"""The spine end to end on the embedded sample: it must learn, stay A/B-symmetric and keep the swap mapping."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.labels import CLASS_A, CLASS_B, CLASS_TIE, swap_labels, swap_probabilities
from competition.metric import log_loss, prior_log_loss
from data.loader import load_arena_csv
from features.paired import swap_features
from models.lgbm import _with_swaps
from stages import training as pipeline

QUICK = {"lgbm": {"num_threads": 1, "max_rounds": 400}, "features": {"cache_dir": ""}, "cv": {"folds": 3, "fold_dir": ""}}


@pytest.fixture(scope="module")
def sample_cv():
    cfg = load_config(pipeline.training_config("lgbm"), None, [QUICK, {"data": {"max_rows": 2400, "test": ""}}])
    return cfg, pipeline.run_cv(cfg, write=False).result


def test_cv_on_the_embedded_sample_beats_the_prior_by_a_margin(sample_cv):
    _, result = sample_cv
    loss, prior = log_loss(result.y, result.oof), prior_log_loss(result.y)
    assert result.scored.all() and len(result.y) == 2400
    assert loss < prior - 0.04, (loss, prior)


def test_scored_rows_never_share_a_prompt_with_their_training_rows(sample_cv):
    _, result = sample_cv
    for fold in np.unique(result.folds):
        assert not set(result.groups[result.folds == fold]) & set(result.groups[result.folds != fold])


def test_fitted_model_is_exactly_symmetric_on_a_swapped_file(sample_cv, tmp_path):
    cfg, _ = sample_cv
    cfg = replace(cfg, out=str(tmp_path / "run"))
    model_dir = pipeline.run_fit(cfg)
    test = pd.read_csv("data/sample/test.csv", dtype=str).head(60)
    test.to_csv(tmp_path / "t.csv", index=False)
    test.rename(columns={"response_a": "response_b", "response_b": "response_a"}).to_csv(tmp_path / "swapped.csv", index=False)
    ids, direct = pipeline.predict(model_dir, tmp_path / "t.csv")
    _, exchanged = pipeline.predict(model_dir, tmp_path / "swapped.csv")
    np.testing.assert_allclose(swap_probabilities(direct), exchanged, atol=1e-12)
    assert not np.allclose(direct[:, 0], direct[:, 1])  # not symmetric by being constant


def test_swap_augmentation_maps_a_b_tie_to_b_a_tie_with_swapped_features():
    frame = load_arena_csv("data/sample/train.csv.xz", require_labels=True, max_rows=30)
    from features.registry import build_features

    X = build_features(frame, ("lengths", "markdown"))
    y = np.array([CLASS_A, CLASS_B, CLASS_TIE] * 10)
    X2, y2 = _with_swaps(X, y)
    assert list(y2[30:33]) == [CLASS_B, CLASS_A, CLASS_TIE] and np.array_equal(y2[30:], swap_labels(y))
    pd.testing.assert_frame_equal(X2.iloc[30:].reset_index(drop=True), swap_features(X).reset_index(drop=True))
    a_len, b_len = X["lengths__a_chars"].to_numpy(), X["lengths__b_chars"].to_numpy()
    np.testing.assert_array_equal(X2["lengths__a_chars"].to_numpy()[30:], b_len)
    np.testing.assert_array_equal(X2["lengths__diff_chars"].to_numpy()[30:], b_len - a_len)
    assert swap_labels(np.array([0, 1, 2])).tolist() == [1, 0, 2]
