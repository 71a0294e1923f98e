"""The pairwise-objective GBDT over answer rows: its gradient and hessian against finite differences, A/B
symmetry of the family and of the feature group, learning, saving without pickle, and the nesting that keeps
every stacked score away from the prompts its copy was fitted on (a spy, plus a planted leak it catches)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import features.trained as trained_module
from competition.crossfit import cross_fit
from competition.folds import assign_folds, prompt_groups
from competition.labels import swap_probabilities
from competition.metric import log_loss
from data.loader import load_arena_csv
from features.answer_score import AnswerScorer, answer_table, pair_gradients, pair_log_loss
from features.registry import FEATURE_GROUPS, FeatureConfig, attach_features
from models.answer_gbdt import PairwiseGBDT
from models.lgbm import LGBMConfig, LGBMPreference
from models.registry import load_model, save_model
from tests.conftest import make_arena_frame

FAST = LGBMConfig(max_rounds=30, early_stopping_rounds=5, min_data_in_leaf=5, num_threads=1, inner_folds=3)
BASE = ("lengths", "markdown", "style", "consensus")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Several pairs per prompt over shared answers (every pair of five answers), as on arena-bench-pairs."""
    rows = []
    source = make_arena_frame(n_prompts=16, rows_per_prompt=5, seed=7)
    rng = np.random.default_rng(7)
    for prompt, block in source.groupby("prompt", sort=False):
        answers = list(block["response_a"])
        lengths = [len(a) for a in answers]
        for i in range(5):
            for j in range(i + 1, 5):
                a, b = (i, j) if rng.random() < 0.5 else (j, i)
                gap = (lengths[a] - lengths[b]) / 300 + rng.normal(0, 0.5)
                winner = 0 if gap > 0.3 else 1 if gap < -0.3 else 2
                rows.append(
                    {"id": f"{len(rows)}", "prompt": prompt, "response_a": answers[a], "response_b": answers[b]}
                    | {f"winner_model_{k}": int(winner == n) for n, k in enumerate(("a", "b"))}
                    | {"winner_tie": int(winner == 2), "model_a": f"m{a}", "model_b": f"m{b}"}
                )
    path = tmp_path_factory.mktemp("answers") / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    frame = load_arena_csv(path, require_labels=True)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def swapped(frame: pd.DataFrame) -> pd.DataFrame:
    columns = {"response_a": "response_b", "response_b": "response_a", "model_a": "model_b", "model_b": "model_a"}
    return frame.drop(columns=[c for c in frame.columns if "__" in c]).rename(columns=columns)


def test_gradient_and_hessian_equal_finite_differences_of_the_pair_log_likelihood():
    rng = np.random.default_rng(0)
    n, m = 7, 40
    scores = rng.normal(size=n)
    side_a = rng.integers(0, n, m)
    side_b = (side_a + rng.integers(1, n, m)) % n
    y, log_nu = rng.integers(0, 3, m), -0.4
    grad, hess = pair_gradients(scores, side_a, side_b, y, log_nu)
    loss = lambda s: pair_log_loss(s, side_a, side_b, y, log_nu)  # noqa: E731
    step = np.eye(n)
    first = np.array([(loss(scores + 1e-6 * e) - loss(scores - 1e-6 * e)) / 2e-6 for e in step])
    second = np.array([(loss(scores + 1e-4 * e) - 2 * loss(scores) + loss(scores - 1e-4 * e)) / 1e-8 for e in step])
    np.testing.assert_allclose(grad, first, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hess, second, rtol=1e-4, atol=1e-5)
    assert (hess > 0).all() and np.abs(grad).max() > 0.1


def test_each_distinct_answer_is_one_row_and_its_pairs_point_at_it(pairs):
    frame = attach_features(pairs, BASE, None)
    columns = [c for c in frame.columns if "__" in c]
    table, side_a, side_b = answer_table(frame, columns)
    assert len(table) == 16 * 5 and len(frame) == 16 * 10
    np.testing.assert_array_equal(table["lengths__chars"].to_numpy()[side_a], frame["lengths__a_chars"].to_numpy())
    np.testing.assert_array_equal(table["lengths__chars"].to_numpy()[side_b], frame["lengths__b_chars"].to_numpy())


def test_the_family_learns_is_exactly_symmetric_and_round_trips(pairs, tmp_path):
    y = pairs["label"].to_numpy()
    model = PairwiseGBDT(FeatureConfig(BASE, cache_dir=None), num_threads=1).fit(pairs, y, pairs["group"].to_numpy())
    probs = model.predict_proba(pairs)
    assert log_loss(y, probs) < 0.95 * log_loss(y, np.tile(np.bincount(y, minlength=3) / len(y), (len(y), 1)))
    assert np.abs(probs[:, 0] - probs[:, 1]).max() > 0.1  # not symmetric by saying nothing
    np.testing.assert_allclose(model.predict_proba(swapped(pairs)), swap_probabilities(probs), atol=1e-12)
    loaded = load_model(save_model(model, tmp_path / "gbdt"))
    np.testing.assert_array_equal(loaded.predict_proba(pairs), probs)


def test_the_feature_group_swaps_with_the_answers_and_saves_without_pickle(pairs, tmp_path):
    frame = attach_features(pairs, BASE, None)
    scorer = AnswerScorer(num_threads=1).fit(frame, pairs["label"].to_numpy())
    direct, exchanged = scorer.transform(frame), scorer.transform(attach_features(swapped(pairs), BASE, None))
    np.testing.assert_allclose(exchanged["answer_score__a_score"], direct["answer_score__b_score"])
    np.testing.assert_allclose(exchanged["answer_score__diff_score"], -direct["answer_score__diff_score"])
    trained_module.save_state(scorer, tmp_path / "s.npz")
    pd.testing.assert_frame_equal(trained_module.load_state("answer_score", tmp_path / "s.npz").transform(frame), direct)


class Spy:
    """Wraps a trained group's class: records the prompts each copy was fitted on and the prompts it described."""

    log: list[tuple[str, set, set]] = []

    @staticmethod
    def around(name: str, cls: type) -> type:
        class Spied(cls):
            def fit(self, frame, y):
                self.seen_ = set(frame["group"])
                return super().fit(frame, y)

            def transform(self, frame):
                Spy.log.append((name, self.seen_, set(frame["group"])))
                return super().transform(frame)

        return Spied


def stacked_leaks(pairs, monkeypatch) -> list[str]:
    """Cross-fits LightGBM with both trained groups spied on; lists every description of a prompt by a copy
    that was fitted on it."""
    for name in ("author", "answer_score"):
        monkeypatch.setitem(
            FEATURE_GROUPS, name, replace(FEATURE_GROUPS[name], trainer=Spy.around(name, FEATURE_GROUPS[name].trainer))
        )
    Spy.log = []
    y, groups = pairs["label"].to_numpy(), pairs["group"].to_numpy()
    folds = assign_folds(y, pd.Series(groups), 3, seed=0)
    features = FeatureConfig((*BASE, "author", "answer_score"), cache_dir=None)
    cross_fit(lambda fold: LGBMPreference(FAST, features, seed=fold), pairs, y, folds, groups)
    return [
        f"{name}: fitted on {sorted(seen)[:1]}... described {sorted(seen & asked)[:1]}"
        for name, seen, asked in Spy.log
        if seen & asked
    ]


def test_no_stacked_score_describes_a_prompt_its_copy_was_fitted_on(pairs, monkeypatch):
    assert stacked_leaks(pairs, monkeypatch) == []
    counts = pd.Series([name for name, _, _ in Spy.log]).value_counts().to_dict()
    assert counts == {"author": 3 * (3 + 1), "answer_score": 3 * (3 + 1)}  # per outer fold: 3 nested + 1 final


def test_planted_stacking_leak_is_caught(pairs, monkeypatch):
    def leaky(name, frame, y, groups, n_folds, seed):  # fits on every row, then describes those same rows
        return trained_module.fit_group(name, frame, y).transform(frame)

    monkeypatch.setattr("models.lgbm.nested_features", leaky)
    assert any(leak.startswith("answer_score") for leak in stacked_leaks(pairs, monkeypatch))


def test_lgbm_with_answer_scores_saves_loads_and_predicts_alone(pairs, tmp_path):
    features = FeatureConfig((*BASE, "answer_score"), cache_dir=None)
    model = LGBMPreference(FAST, features).fit(pairs, pairs["label"].to_numpy(), pairs["group"].to_numpy())
    assert any(c.startswith("answer_score__") for c in model.columns_)
    loaded = load_model(save_model(model, tmp_path / "lgbm"))
    np.testing.assert_array_equal(loaded.predict_proba(pairs), model.predict_proba(pairs))
    alone = pairs.assign(group=pairs["id"].astype(str))
    assert np.isfinite(loaded.predict_proba(alone)).all()
