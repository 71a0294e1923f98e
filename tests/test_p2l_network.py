"""The finetune encoder: the GPU preset (a decoder LLM with LoRA, read at the last token) builds and trains on a
tiny 2-layer Llama saved with the MiniLM tokenizer; MiniLM itself can be fully fine-tuned the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_backbone

from competition.config import load_config
from models.p2l.estimator import P2LPreference
from models.p2l.settings import EncoderConfig, HeadConfig, TuneConfig
from stages.training import training_config
from tests.test_p2l import simulated_battles

PRESET = "configs/p2l/qwen25_lora.toml"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("tiny_llama"), "llama")


def preset_on(path: str, *changes: str):
    cpu = [f"encoder.model_path={path!r}", "encoder.dtype='float32'", "tune.device='cpu'", "tune.num_threads=1"]
    return load_config(training_config("p2l"), PRESET, [*cpu, "tune.max_steps=3", *changes])


def test_the_gpu_preset_builds_trains_and_reloads_on_a_tiny_llama(tiny_llama, tmp_path):
    cfg = preset_on(tiny_llama)
    assert (cfg.encoder.kind, cfg.encoder.pooling, cfg.encoder.lora) == ("finetune", "last", True)
    frame = simulated_battles(n_prompts=8, repeats=1)
    model = P2LPreference(cfg.encoder, cfg.head, cfg.tune).fit(frame, frame["label"].to_numpy())
    assert model.fit_facts_["steps"] == 3
    trainable = {n for n, p in model.network_.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and "head.weight" in trainable
    assert not any("lora_" not in n and not n.startswith("head.") for n in trainable)  # the base stays frozen
    probs = model.predict_proba(frame)
    assert probs.shape == (len(frame), 3) and probs.dtype == np.float64 and np.allclose(probs.sum(axis=1), 1.0)
    model.save(tmp_path / "model")
    again = P2LPreference.load(tmp_path / "model")
    assert np.allclose(again.predict_proba(frame), probs, atol=1e-6)


def test_the_head_starts_at_the_global_leaderboard(tiny_llama):
    from models.p2l.encoders import tokenize
    from models.p2l.head import OUTCOME_OF_LABEL, Battles, global_start
    from models.p2l.network import build_network, network_coefficients

    cfg = preset_on(tiny_llama)
    frame = simulated_battles(n_prompts=8, repeats=1)
    models = sorted(set(frame["model_a"]) | set(frame["model_b"]))
    index = {m: i for i, m in enumerate(models)}
    battles = Battles(
        np.zeros(len(frame), dtype=np.int64),
        frame["model_a"].map(index).to_numpy(),
        frame["model_b"].map(index).to_numpy(),
        OUTCOME_OF_LABEL[frame["label"].to_numpy()],
    )
    start = global_start(battles, len(models), 0, "davidson")
    tokenizer, network = build_network(cfg.encoder, len(models), torch.device("cpu"), 0)
    with torch.no_grad():
        network.head.bias.copy_(torch.as_tensor(np.r_[start.bias, start.tie_bias], dtype=torch.float32))
    sequences = tokenize(tokenizer, ["one prompt", "a rather different and longer prompt"], 32)
    theta, tie = network_coefficients(network, tokenizer.pad_token_id, sequences, 2, torch.device("cpu"))
    assert np.allclose(theta - theta.mean(axis=1, keepdims=True), start.bias - start.bias.mean(), atol=1e-5)
    assert np.allclose(tie, start.tie_bias, atol=1e-6)


def test_minilm_can_be_fully_fine_tuned_with_rao_kupper_ties():
    encoder = EncoderConfig(kind="finetune", pooling="mean", max_tokens=32, prompt_features=False)
    tune = TuneConfig(max_steps=2, batch_prompts=4, device="cpu", num_threads=1)
    frame = simulated_battles(n_prompts=6, repeats=1)
    model = P2LPreference(encoder, HeadConfig(tie_model="rao-kupper"), tune).fit(frame, frame["label"].to_numpy())
    assert all(p.requires_grad for p in model.network_.backbone.parameters())
    probs = model.predict_proba(frame)
    assert np.all(probs > 0) and np.allclose(probs.sum(axis=1), 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_preset_trains_in_bfloat16_on_cuda(tiny_llama):
    cfg = load_config(training_config("p2l"), PRESET, [f"encoder.model_path={tiny_llama!r}", "tune.max_steps=5"])
    frame = simulated_battles(n_prompts=8, repeats=1)
    model = P2LPreference(cfg.encoder, cfg.head, cfg.tune).fit(frame, frame["label"].to_numpy())
    assert model.device_.type == "cuda"
    assert model.network_.get_input_embeddings().weight.dtype in (torch.bfloat16, torch.float16)
    assert model.network_.head.weight.dtype == torch.float32
    assert np.allclose(model.predict_proba(frame).sum(axis=1), 1.0)


def test_a_float16_fine_tune_skips_a_non_finite_step_instead_of_turning_every_weight_into_nan(tiny_llama, monkeypatch):
    """Issue 22 item 7: under float16 (T4, V100) the step whose gradients overflow must be skipped by loss scaling."""
    import models.p2l.network as network_module

    original, calls = network_module.battle_log_probs, []

    def overflow_once(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(1)
        return out * float("inf") if len(calls) == 2 else out  # the second step's gradients are not finite

    monkeypatch.setattr(network_module, "battle_log_probs", overflow_once)
    cfg = preset_on(tiny_llama, "encoder.dtype='float16'")
    frame = simulated_battles(n_prompts=8, repeats=1)
    model = P2LPreference(cfg.encoder, cfg.head, cfg.tune).fit(frame, frame["label"].to_numpy())
    assert model.network_.get_input_embeddings().weight.dtype == torch.float16 and len(calls) == 3
    trained = [p for p in model.network_.parameters() if p.requires_grad]
    assert all(torch.isfinite(p).all() for p in trained)
    assert np.isfinite(model.predict_proba(frame)).all()
