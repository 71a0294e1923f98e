"""Scoring a fold model saved by `train-transformer`: the engine must agree with the estimator's own
predict_proba (LoRA merged on a tiny BERT; and to the last bits on tiny BERT, Gemma-2 and Llama backbones
whose tokenizers pad on the left), and take the packing length the model was trained with."""

import json
import shutil

import numpy as np
import pytest
from test_inference_engine import keep_torch_threads, make_frame, model_dir  # noqa: F401  (the tiny random BERT + MiniLM tokenizer)
from tiny_models import tiny_backbone

from inference.config import BatchConfig, InferenceConfig, ModelConfig, SwapConfig, WorkerConfig
from inference.engine import infer_frame
from inference.sources import default_max_length, tokenizer_dir
from models.backbone import load_tokenizer
from models.transformer.batches import cut_batches, longest_first
from models.transformer.estimator import TransformerPreference, saved_settings
from models.transformer.packing import encode_pairs
from models.transformer.settings import ModelConfig as TransformerModelConfig
from models.transformer.settings import TrainConfig

TRAINED_LENGTH = 80
SHARED_BUDGET = 400  # padded tokens per batch on both sides, so they cut the same batches


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


def pads_on_the_left(directory) -> str:
    """The tokenizer saved in `directory` set to pad on the left, as Gemma's and Llama's do in transformers 5."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def left_padding_bases(model_dir, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("left_padding")
    bert = shutil.copytree(model_dir, root / "bert")
    bases = {"bert": bert} | {kind: tiny_backbone(root / kind, kind) for kind in ("gemma2", "llama")}
    return {kind: pads_on_the_left(path) for kind, path in bases.items()}


@pytest.mark.parametrize("kind", ["bert", "gemma2", "llama"])
def test_engine_equals_the_estimator_on_mixed_length_batches_whatever_side_the_tokenizer_pads(left_padding_bases, kind, tmp_path):
    """One pair encoder, one batching rule, one right-padding collate: the same numbers, not merely close.

    BERT reads absolute positions and its [CLS] at index 0, so a left-padded batch would be far off; the
    decoders' rotary positions are relative, so there a left pad moves only the last bits (about 1e-7).
    """
    base = left_padding_bases[kind]
    assert load_tokenizer(base).padding_side == "left"
    model = TransformerModelConfig(model_path=base, max_length=TRAINED_LENGTH)  # full fine-tune: no LoRA merge at load
    train = TrainConfig(max_steps=1, batch_size=4, learning_rate=1e-3, device="cpu", num_threads=1, predict_tokens=SHARED_BUDGET)
    estimator = TransformerPreference(model, train).fit(make_frame(8, seed=5), np.arange(8) % 3)
    cfg = InferenceConfig(
        model=ModelConfig(path=str(estimator.save(tmp_path / "model")), dtype="float32"),
        batching=BatchConfig(token_budget=SHARED_BUDGET, shard_rows=4),
        swap=SwapConfig(average=True),
        workers=WorkerConfig(threads=1),
    )
    frame = make_frame(16, seed=6)
    tokenizer = load_tokenizer(tokenizer_dir(cfg.model.path))
    lengths = np.array([len(s) for s in encode_pairs(tokenizer, frame, TRAINED_LENGTH)])
    assert any(len(set(lengths[b])) > 1 for b in cut_batches(lengths, longest_first(lengths), SHARED_BUDGET))
    probs, _ = infer_frame(frame, tokenizer, cfg, tmp_path / "shards", show_progress=False)
    np.testing.assert_allclose(probs, estimator.predict_proba(frame), atol=1e-12, rtol=0)


def test_default_packing_length(fold_model, model_dir, tmp_path):  # noqa: F811
    assert saved_settings(model_dir) is None and tokenizer_dir(model_dir) == str(model_dir)
    assert default_max_length(fold_model) == TRAINED_LENGTH
    assert default_max_length(model_dir) == 512  # BERT's position limit is below 1536
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    assert default_max_length(tmp_path) == 1536
