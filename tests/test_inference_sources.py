"""Scoring a fold model saved by `train-transformer` (LoRA on a tiny BERT): the engine must agree with the
estimator's own predict_proba, and take the packing length the model was trained with."""

import json

import numpy as np
import pytest
from test_inference_engine import keep_torch_threads, make_frame, model_dir  # noqa: F401  (the tiny random BERT + MiniLM tokenizer)

from inference.config import BatchConfig, InferenceConfig, ModelConfig, SwapConfig, WorkerConfig
from inference.engine import infer_frame
from inference.sources import default_max_length, saved_settings, tokenizer_dir
from models.transformer.estimator import TransformerPreference
from models.transformer.loading import load_tokenizer
from models.transformer.settings import ModelConfig as TransformerModelConfig
from models.transformer.settings import TrainConfig

TRAINED_LENGTH = 80


@pytest.fixture(scope="module")
def fold_model(model_dir, tmp_path_factory):  # noqa: F811
    frame = make_frame(8, seed=5)
    model = TransformerModelConfig(
        model_path=str(model_dir), max_length=TRAINED_LENGTH, lora=True, lora_targets=("query", "value")
    )
    train = TrainConfig(max_steps=1, batch_size=4, learning_rate=1e-2, device="cpu", num_threads=1, seed=3)
    estimator = TransformerPreference(model, train).fit(frame, np.arange(len(frame)) % 3)
    return estimator.save(tmp_path_factory.mktemp("fold0") / "model")


def test_a_saved_fold_model_scores_as_its_estimator_does(fold_model, tmp_path):
    frame = make_frame(16, seed=6)
    cfg = InferenceConfig(
        model=ModelConfig(path=str(fold_model), dtype="float32"),
        batching=BatchConfig(token_budget=500, shard_rows=4),
        swap=SwapConfig(average=True),  # the estimator averages both orders too
        workers=WorkerConfig(threads=1),
    )
    assert cfg.model.resolved_max_length() == TRAINED_LENGTH
    tokenizer = load_tokenizer(tokenizer_dir(fold_model))
    probs, stats = infer_frame(frame, tokenizer, cfg, tmp_path / "shards", show_progress=False)
    expected = TransformerPreference.load(fold_model).predict_proba(frame)
    assert stats["shards"] > 1
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)


def test_default_packing_length(fold_model, model_dir, tmp_path):  # noqa: F811
    assert saved_settings(model_dir) is None and tokenizer_dir(model_dir) == str(model_dir)
    assert default_max_length(fold_model) == TRAINED_LENGTH
    assert default_max_length(model_dir) == 512  # BERT's position limit is below 1536
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    assert default_max_length(tmp_path) == 1536
