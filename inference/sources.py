"""Where a classifier comes from: a Hugging Face directory, or a fold model saved by `train-transformer`.

A saved fold model (estimator.json + trainable.safetensors, as `TransformerPreference.save` writes) holds
only the trained weights (LoRA adapters and head, or all weights of a full fine-tune) and the identity of its
base; the base is found among the folders given as `base_models` (`--base-model`), else where it was at
training, and checked (`models.transformer.estimator.fold_model_settings`). Both kinds load into a plain
sequence classifier for scoring, with the attention implementation the fold model trained with.

A fold model trained on a 4-bit base is a function of the NF4-rounded weights: its adapters merged into
unquantized weights, or such a merge quantized again, score differently (0.08 in probability on a tiny test
model). That is refused unless `accept_merged_4bit` is set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from competition.errors import InputError
from competition.rundir import read_manifest, run_kind

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 1536
MERGED_KIND = "merged-model"  # a fold model merged into a plain Hugging Face folder (inference/merge.py)
MERGED_4BIT = (
    "was trained on a 4-bit base: merged weights score it as another function (probabilities move); score it in "
    "4-bit (model.quantize_4bit = true), or set model.accept_merged_4bit = true to accept the difference"
)


def tokenizer_dir(model_path: str | Path, base_models=()) -> str:
    """The directory holding the tokenizer: the base model's for a saved fold model."""
    from models.transformer.estimator import fold_model_settings, saved_settings

    if saved_settings(model_path) is None:
        return str(model_path)
    return fold_model_settings(model_path, base_models)[0].model_path


def merged_facts(target_dir: str | Path) -> dict | None:
    """The facts an earlier merge recorded in `target_dir`, or None when it holds no merge. A merge whose files do
    not match its manifest (torn, changed) has no facts ({}): it is merged again, never served."""
    target_dir = Path(target_dir)
    if run_kind(target_dir) != MERGED_KIND:
        return None
    try:
        return read_manifest(target_dir, MERGED_KIND).get("facts", {})
    except InputError as err:
        log.warning("the merged copy is damaged (%s): merged again", err)
        return {}


def check_source(model_path: str | Path, base_models=(), random_init: bool = False) -> None:
    """What a worker will read, checked before any work: a fold model's settings, weights header and base (found
    and matched by identity), or a Hugging Face directory's config and weights headers."""
    from models.transformer.estimator import fold_model_settings, saved_settings
    from models.transformer.model_files import check_model_folder

    if saved_settings(model_path) is not None:
        check_model_folder(fold_model_settings(model_path, base_models)[0].model_path, "sequence-classification")
    else:
        check_model_folder(model_path, "sequence-classification", weights=not random_init)


def check_vllm_source(model_path: str | Path, base_models=()) -> None:
    """vLLM soft-caps Gemma-2's attention whatever it is told: a fold model, or the merge of one, trained without
    the cap is refused (models/transformer/attention.py)."""
    from models.transformer.attention import check_vllm_attention
    from models.transformer.estimator import fold_model_settings, saved_settings
    from models.transformer.model_files import read_json_object

    if saved_settings(model_path) is not None:
        model_cfg = fold_model_settings(model_path, base_models)[0]
        recorded, config_dir = model_cfg.attn_implementation, model_cfg.model_path
    else:  # a merge records its fold model's attention; a folder from elsewhere records none
        recorded, config_dir = (merged_facts(model_path) or {}).get("attention"), model_path
    if recorded:
        check_vllm_attention(recorded, read_json_object(Path(config_dir) / "config.json"), model_path)


def check_merged_source(model_path: str | Path, accept_merged_4bit: bool) -> None:
    """A merged folder (inference/merge.py) of a fold model trained in 4 bits is refused unless accepted."""
    facts = merged_facts(model_path)
    if facts and facts.get("trained_4bit") and not accept_merged_4bit:
        raise InputError(f"this merged model {MERGED_4BIT}", model_path)


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


def load_saved_classifier(
    model_path: str | Path, device: str, dtype: str, quantize_4bit: bool, base_models=(), accept_merged_4bit: bool = False
):
    """(tokenizer, model) of a fold model: its base rebuilt as in training, the trained weights loaded,
    LoRA adapters merged in (unless 4-bit, where they stay separate)."""
    import torch
    from safetensors.torch import load_file

    from models.backbone import load_trainable_state
    from models.transformer.estimator import WEIGHTS_FILE, fold_model_settings
    from models.transformer.training import build_model

    model_cfg, train_cfg = fold_model_settings(model_path, base_models, device)
    if model_cfg.head != "cross":
        raise InputError(
            f"a {model_cfg.head}-head model scores each response on its own: predict it with `predict --model`, not `infer`",
            model_path,
        )
    if model_cfg.quantize_4bit and not quantize_4bit:
        if not accept_merged_4bit:
            raise InputError(MERGED_4BIT, model_path)
        log.warning("%s: scored on merged unquantized weights, as accepted (model.accept_merged_4bit)", model_path)
    elif quantize_4bit and not model_cfg.quantize_4bit:
        log.warning("%s was trained on an unquantized base: scoring it in 4-bit moves its probabilities", model_path)
    cfg = replace(model_cfg, dtype=dtype, quantize_4bit=quantize_4bit, gradient_checkpointing=False)
    tokenizer, model = build_model(cfg, torch.device(device), train_cfg.seed)
    load_trainable_state(model, load_file(str(Path(model_path) / WEIGHTS_FILE)), Path(model_path))
    if cfg.lora and not quantize_4bit:
        model = model.merge_and_unload()
    return tokenizer, model.eval()
