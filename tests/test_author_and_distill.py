"""Issue 12's trained parts: the `author` group and distillation never see a row's own prompt, stay A/B
symmetric, and the distilled objective is the hard-label one at teacher weight 0."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import features.trained as trained_module
from competition.crossfit import cross_fit
from competition.folds import assign_folds, prompt_groups
from competition.labels import one_hot, swap_probabilities
from competition.metric import log_loss
from data.loader import load_arena_csv
from features.author import AuthorModel
from features.registry import FEATURE_GROUPS, FeatureConfig
from models.distill import expand_rows, soft_targets, weighted_log_loss
from models.lgbm import LGBMConfig, LGBMPreference
from tests.conftest import make_arena_frame

FAST = LGBMConfig(max_rounds=30, early_stopping_rounds=5, min_data_in_leaf=5, num_threads=1, inner_folds=3)
BASE = ("lengths", "markdown")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "train.csv"
    make_arena_frame(n_prompts=18, rows_per_prompt=8, seed=4).to_csv(path, index=False)
    frame = load_arena_csv(path, require_labels=True)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def swapped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(
        columns={"response_a": "response_b", "response_b": "response_a", "model_a": "model_b", "model_b": "model_a"}
    )


def test_author_features_swap_with_the_answers(pairs):
    model = AuthorModel().fit(pairs, pairs["label"].to_numpy())
    direct, exchanged = model.transform(pairs), model.transform(swapped(pairs))
    for measure in ("strength", "entropy"):
        np.testing.assert_allclose(exchanged[f"author__a_{measure}"], direct[f"author__b_{measure}"])
        np.testing.assert_allclose(exchanged[f"author__diff_{measure}"], -direct[f"author__diff_{measure}"])


def test_author_state_round_trips_without_pickle(pairs, tmp_path):
    model = AuthorModel().fit(pairs, pairs["label"].to_numpy())
    trained_module.save_state(model, tmp_path / "a.npz")
    loaded = trained_module.load_state("author", tmp_path / "a.npz")
    pd.testing.assert_frame_equal(loaded.transform(pairs), model.transform(pairs))


class SpyAuthor(AuthorModel):
    """Records the prompts each copy was fitted on and the prompts it was asked to describe."""

    log: list[tuple[set, set]] = []

    def fit(self, frame, y):
        self.seen_ = set(frame["group"])
        return super().fit(frame, y)

    def transform(self, frame):
        SpyAuthor.log.append((self.seen_, set(frame["group"])))
        return super().transform(frame)


def author_leaks(pairs, monkeypatch) -> list[str]:
    """Cross-fits LightGBM with the spy author group; lists every transform of a prompt its copy was fitted on."""
    monkeypatch.setitem(FEATURE_GROUPS, "author", replace(FEATURE_GROUPS["author"], trainer=SpyAuthor))
    SpyAuthor.log = []
    y, groups = pairs["label"].to_numpy(), pairs["group"].to_numpy()
    folds = assign_folds(y, pd.Series(groups), 3, seed=0)
    features = FeatureConfig((*BASE, "author"), cache_dir=None)
    cross_fit(lambda fold: LGBMPreference(FAST, features, seed=fold), pairs, y, folds, groups)
    return [
        f"copy fitted on {sorted(seen)[:2]}... described {sorted(seen & asked)}" for seen, asked in SpyAuthor.log if seen & asked
    ]


def test_author_model_never_describes_a_prompt_it_was_fitted_on(pairs, monkeypatch):
    assert author_leaks(pairs, monkeypatch) == []
    assert len(SpyAuthor.log) == 3 * (3 + 1)  # per outer fold: 3 nested copies + the final copy for the scored rows


def test_planted_author_leak_is_caught(pairs, monkeypatch):
    def leaky(name, frame, y, groups, n_folds, seed):  # fits on every row, then describes those same rows
        return trained_module.fit_group(name, frame, y).transform(frame)

    monkeypatch.setattr("models.lgbm.nested_features", leaky)
    assert author_leaks(pairs, monkeypatch) != []


def test_lgbm_with_author_saves_loads_and_predicts_files_without_names(pairs, tmp_path):
    features = FeatureConfig((*BASE, "author"), cache_dir=None)
    model = LGBMPreference(FAST, features).fit(pairs, pairs["label"].to_numpy(), pairs["group"].to_numpy())
    model.save(tmp_path / "m")
    loaded = LGBMPreference.load(tmp_path / "m")
    no_names = pairs.drop(columns=["model_a", "model_b"])
    np.testing.assert_array_equal(loaded.predict_proba(no_names), model.predict_proba(pairs))
    np.testing.assert_allclose(swap_probabilities(model.predict_proba(pairs)), model.predict_proba(swapped(pairs)), atol=1e-12)


def test_soft_target_objective_is_the_hard_one_at_weight_zero_and_cross_entropy_otherwise():
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=50)
    teacher = rng.dirichlet([1, 1, 1], size=50)
    probs = rng.dirichlet([2, 2, 2], size=50)
    X = pd.DataFrame({"x": np.arange(50.0)})
    rows, labels, weights = expand_rows(X, soft_targets(y, teacher, 0.0))
    assert list(rows["x"]) == list(X["x"]) and np.array_equal(labels, y) and np.all(weights == 1)
    hard = -np.log(probs[np.arange(50), y]).sum()
    assert weighted_log_loss(probs[rows.index], labels, weights) == pytest.approx(hard)
    q = soft_targets(y, teacher, 0.3)
    rows, labels, weights = expand_rows(X, q)
    expanded_probs = probs[rows["x"].to_numpy().astype(int)]
    assert weighted_log_loss(expanded_probs, labels, weights) == pytest.approx(-(q * np.log(probs)).sum())


def test_soft_targets_at_an_asymmetric_teacher_weight_match_the_definition_worked_by_hand():
    y = np.array([0, 1, 2])
    teacher = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    # q = 0.7 · one-hot(y) + 0.3 · teacher, row by row (swapping the weights would give 0.44, 0.35, 0.21 first)
    by_hand = np.array([[0.76, 0.15, 0.09], [0.18, 0.73, 0.09], [0.03, 0.03, 0.94]])
    q = soft_targets(y, teacher, 0.3)
    np.testing.assert_allclose(q, by_hand, atol=1e-12)
    probs = np.array([[0.5, 0.3, 0.2], [0.25, 0.5, 0.25], [0.2, 0.2, 0.6]])
    rows, labels, weights = expand_rows(pd.DataFrame({"x": [0, 1, 2]}), q)
    objective = weighted_log_loss(probs[rows["x"].to_numpy()], labels, weights)
    # the cross-entropy to q, each term written out: −Σ_k q_k log p_k
    by_hand_loss = -(
        0.76 * np.log(0.5) + 0.15 * np.log(0.3) + 0.09 * np.log(0.2)
        + 0.18 * np.log(0.25) + 0.73 * np.log(0.5) + 0.09 * np.log(0.25)
        + 0.03 * np.log(0.2) + 0.03 * np.log(0.2) + 0.94 * np.log(0.6)
    )  # fmt: skip
    assert objective == pytest.approx(by_hand_loss, rel=1e-12)


def test_teacher_weight_zero_trains_exactly_the_hard_label_model(pairs, teacher_run):
    y, groups = pairs["label"].to_numpy(), pairs["group"].to_numpy()
    features = FeatureConfig(BASE, cache_dir=None)
    plain = LGBMPreference(FAST, features).fit(pairs, y, groups)
    zero = LGBMPreference(replace(FAST, teacher=teacher_run, teacher_weight=0.0), features).fit(pairs, y, groups)
    np.testing.assert_array_equal(zero.predict_proba(pairs), plain.predict_proba(pairs))
    forced = LGBMPreference(FAST, features)  # the expanded-rows path with one-hot targets, too
    forced._teacher_probabilities = lambda frame, y, groups: one_hot(y)
    forced = replace_config_weight(forced, teacher_run, 1.0).fit(pairs, y, groups)
    np.testing.assert_allclose(forced.predict_proba(pairs), plain.predict_proba(pairs), atol=1e-12)


def replace_config_weight(model: LGBMPreference, teacher: str, weight: float) -> LGBMPreference:
    model.config = replace(model.config, teacher=teacher, teacher_weight=weight)
    return model


def test_teacher_never_sees_the_students_validation_prompts_nor_the_rows_it_labels(pairs, teacher_run, teacher_calls):
    calls = teacher_calls
    y, groups = pairs["label"].to_numpy(), pairs["group"].to_numpy()
    folds = assign_folds(y, pd.Series(groups), 3, seed=1)
    student = replace(FAST, teacher=teacher_run, teacher_weight=0.5)
    result = cross_fit(lambda fold: LGBMPreference(student, FeatureConfig(BASE, None), fold), pairs, y, folds, groups)
    assert len(calls) == 3 * (3 + 1)  # per outer fold: 3 inner teachers label training rows, then the student scores
    assert all(not (seen & asked) for seen, asked in calls)
    assert log_loss(y, result.oof) < 1.2


def test_alone_share_rebuilds_a_share_of_training_prompts_as_if_alone(pairs):
    from features.registry import attach_features_alone, build_features

    groups = ("lengths", "consensus")
    y, prompts = pairs["label"].to_numpy(), pairs["group"].to_numpy()
    batch = build_features(pairs, groups)
    alone = attach_features_alone(pairs, groups)[batch.columns]
    assert not np.allclose(batch["consensus__a_agreement"].fillna(-1), alone["consensus__a_agreement"].fillna(-1))
    for share, expected_alone in ((0.0, 0), (0.5, 9), (1.0, 18)):
        model = LGBMPreference(replace(FAST, alone_share=share), FeatureConfig(groups, None), seed=3)
        table = model._training_table(pairs, y, prompts)
        same_as_alone = [np.allclose(table[prompts == p].fillna(-1), alone[prompts == p].fillna(-1)) for p in np.unique(prompts)]
        assert sum(same_as_alone) == expected_alone


def test_ablation_reports_author_and_distillation_in_both_scoring_modes(teacher_run, tmp_path):
    from competition.config import load_config
    from stages.ablate import run_ablation
    from stages.training import training_config

    path = tmp_path / "train.csv"
    make_arena_frame(n_prompts=18, rows_per_prompt=8, seed=4).to_csv(path, index=False)
    overrides = {
        "data": {"train": str(path), "test": ""},
        "cv": {"folds": 3, "fold_dir": ""},
        "features": {"groups": [*BASE, "consensus", "author"], "cache_dir": ""},
        "lgbm": {"max_rounds": 30, "early_stopping_rounds": 5, "min_data_in_leaf": 5, "num_threads": 1, "inner_folds": 3},
    }
    cfg = load_config(training_config("lgbm"), None, [overrides, {"lgbm": {"teacher": teacher_run}}])
    table = run_ablation(cfg, ("author", "consensus", "distillation"))
    assert list(table["dropped"]) == ["(none)", "author", "consensus", "distillation"]
    for column in ("log_loss", "log_loss_alone", "delta_mean", "delta_std", "delta_mean_alone", "delta_std_alone"):
        assert table[column].notna().all(), column
    assert table.loc[table["dropped"] == "distillation", "delta_mean"].abs().item() > 0  # the teacher changes something
