"""Where a classifier comes from: a Hugging Face directory, or a fold model saved by `train-transformer`.

A saved fold model (estimator.json + trainable.safetensors, as `TransformerPreference.save` writes) holds
only the trained weights (LoRA adapters and head, or all weights of a full fine-tune); its base model
stays at the path its settings name. Both kinds load into a plain sequence classifier for scoring. The
settings are read by the estimator's own `saved_settings`, so both sides rebuild the same configs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from competition.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 1536


def tokenizer_dir(model_path: str | Path) -> str:
    """The directory holding the tokenizer: the base model's for a saved fold model."""
    from models.transformer.estimator import saved_settings

    settings = saved_settings(model_path)
    return settings[0].resolved_path() if settings else str(model_path)


def default_max_length(model_path: str | Path) -> int:
    """The packing length the fold model was trained with; for a Hugging Face directory 1536, or less when
    the model has fewer positions (MiniLM: 512)."""
    from models.transformer.estimator import saved_settings

    settings = saved_settings(model_path)
    if settings:
        return settings[0].max_length
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return DEFAULT_MAX_LENGTH
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    return min(DEFAULT_MAX_LENGTH, int(positions)) if positions else DEFAULT_MAX_LENGTH


def load_saved_classifier(model_path: str | Path, device: str, dtype: str, quantize_4bit: bool):
    """(tokenizer, model) of a fold model: its base rebuilt as in training, the trained weights loaded,
    LoRA adapters merged in (unless 4-bit, where they stay separate)."""
    import torch
    from safetensors.torch import load_file

    from models.backbone import load_trainable_state
    from models.transformer.estimator import WEIGHTS_FILE, saved_settings
    from models.transformer.training import build_model

    settings = saved_settings(model_path)
    if settings is None:
        raise InputError("not a saved train-transformer model (no estimator.json)", model_path)
    model_cfg, train_cfg = settings
    if model_cfg.head != "cross":
        raise InputError(
            f"a {model_cfg.head}-head model scores each response on its own: predict it with `predict --model`, not `infer`",
            model_path,
        )
    if model_cfg.quantize_4bit and not quantize_4bit:
        log.warning(
            "%s was trained on a 4-bit base; merged into unquantized weights its probabilities move "
            "(0.08 at most on a tiny test model): set model.quantize_4bit = true to score it as trained",
            model_path,
        )
    cfg = replace(model_cfg, dtype=dtype, quantize_4bit=quantize_4bit, gradient_checkpointing=False)
    tokenizer, model = build_model(cfg, torch.device(device), train_cfg.seed)
    load_trainable_state(model, load_file(str(Path(model_path) / WEIGHTS_FILE)), Path(model_path))
    if cfg.lora and not quantize_4bit:
        model = model.merge_and_unload()
    return tokenizer, model.eval()
