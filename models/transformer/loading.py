"""Loads a three-way sequence classifier and its tokenizer from a local directory, never from the network."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from competition.errors import InputError
from competition.labels import LABEL_COLUMNS

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    return DTYPES[dtype]


def check_model_dir(model_dir: str | Path) -> Path:
    """The directory must hold a Hugging Face config; we never fall back to downloading."""
    path = Path(model_dir)
    if not str(model_dir):
        raise InputError("model_path is empty: point it at a local model directory (downloads are never made)")
    if not path.is_dir():
        raise InputError("model directory not found (models are loaded from local files only)", path)
    if not (path / "config.json").exists():
        raise InputError("no config.json: not a Hugging Face model directory", path)
    return path


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    path = check_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        # decoder-only tokenizers have no pad token; padding is masked out, so eos serves
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return tokenizer


def quantization_config(compute_dtype: torch.dtype):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError("4-bit loading needs bitsandbytes: pip install -r requirements-gpu.txt") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype
    )


def load_classifier(
    model_dir: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32", quantize_4bit: bool = False
):
    """(tokenizer, model): AutoModelForSequenceClassification with 3 labels (a, b, tie) from `model_dir`.

    4-bit NF4 through bitsandbytes only when CUDA is present; without CUDA the request is logged and
    the model loads in `dtype`. A pad token is set for decoder models so batches can be padded.
    """
    from transformers import AutoModelForSequenceClassification

    path = check_model_dir(model_dir)
    tokenizer = load_tokenizer(path)
    torch_dtype = resolve_dtype(dtype)
    kwargs = {}
    if quantize_4bit and torch.cuda.is_available():
        kwargs = {"quantization_config": quantization_config(torch_dtype), "device_map": {"": torch.device(device)}}
    elif quantize_4bit:
        log.warning("4-bit quantisation needs CUDA; loading %s in %s instead", path, torch_dtype)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(LABEL_COLUMNS),
        id2label=dict(enumerate(LABEL_COLUMNS)),
        label2id={name: i for i, name in enumerate(LABEL_COLUMNS)},
        local_files_only=True,
        ignore_mismatched_sizes=True,  # a head of another size (e.g. 2 labels) is replaced by a fresh 3-way one
        dtype=torch_dtype,
        **kwargs,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    if "quantization_config" not in kwargs:
        model.to(device)
    return tokenizer, model
