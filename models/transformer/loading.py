"""Loads a sequence classifier and its tokenizer from a local directory, never from the network.

Precision rules shared by training, the estimator and batch inference:
- `dtype = "auto"` is float32 on CPU, bfloat16 on CUDA of compute capability 8 or more, and float16 below
  (a T4 or V100 only emulates bfloat16, which torch's `is_bf16_supported()` counts as support).
- 4-bit NF4 (bitsandbytes >= 0.46) works on CPU and CUDA alike: quantized linears compute in the dtype.
- The KV cache is off: a classifier reads one forward pass, and Gemma-2/Llama would otherwise build a full
  cache per eval batch (about 22 GB at 32k tokens for Gemma-2-9B) that nobody reads.
"""

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
BITSANDBYTES_MISSING = "4-bit loading needs bitsandbytes >= 0.46 (pip install -r requirements.txt)"


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r} (known: auto, {', '.join(DTYPES)})")
    return DTYPES[dtype]


def compute_dtype_name(dtype: str, device: str | torch.device) -> str:
    """The dtype `auto` stands for on `device`; any other name is returned as given."""
    if dtype != "auto":
        return dtype
    device = torch.device(device)
    if device.type != "cuda":
        return "float32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bfloat16" if major >= 8 else "float16"


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


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        raise InputError(BITSANDBYTES_MISSING) from None
    return bitsandbytes


def quantization_config(compute_dtype: torch.dtype):
    _bitsandbytes()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype
    )


def quantize_linears_4bit(model, compute_dtype: torch.dtype) -> int:
    """Replaces every linear of the backbone by an NF4 `Linear4bit` in place (the head stays as it is), as
    `from_pretrained` with a BitsAndBytesConfig does; for weights drawn at random rather than read from disk.
    Returns the number of linears replaced."""
    bnb = _bitsandbytes()
    backbone = getattr(model, model.base_model_prefix, model)
    replaced = 0
    for parent in list(backbone.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            quantized = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4", module=quantized
            )
            if child.bias is not None:
                quantized.bias = child.bias
            setattr(parent, name, quantized.to(child.weight.device))  # moving a Params4bit quantizes it
            replaced += 1
    return replaced


def load_classifier(
    model_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    quantize_4bit: bool = False,
    *,
    random_init: bool = False,
    num_labels: int = len(LABEL_COLUMNS),
):
    """(tokenizer, model): AutoModelForSequenceClassification from `model_dir` (3 labels a, b, tie; 1 for a
    reward head) on `device`.

    `random_init` draws the weights from the config instead of reading them (benchmarks of real
    architectures without their checkpoint), on the device itself so a 9B model is never built on the CPU.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = check_model_dir(model_dir)
    tokenizer = load_tokenizer(path)
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype if isinstance(dtype, torch.dtype) else compute_dtype_name(dtype, device))
    labels = (
        {"id2label": dict(enumerate(LABEL_COLUMNS)), "label2id": {name: i for i, name in enumerate(LABEL_COLUMNS)}}
        if num_labels == len(LABEL_COLUMNS)
        else {"id2label": {0: "reward"}, "label2id": {"reward": 0}}
    )
    if random_init:
        config = AutoConfig.from_pretrained(path, num_labels=num_labels, local_files_only=True, **labels)
        config.pad_token_id = tokenizer.pad_token_id
        with device:
            model = AutoModelForSequenceClassification.from_config(config, dtype=torch_dtype)
        if quantize_4bit:
            quantize_linears_4bit(model, torch_dtype)
    else:
        kwargs = {"quantization_config": quantization_config(torch_dtype), "device_map": {"": device}} if quantize_4bit else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=num_labels,
            local_files_only=True,
            ignore_mismatched_sizes=True,  # a head of another size (e.g. 2 labels) is replaced by a fresh one
            dtype=torch_dtype,
            **labels,
            **kwargs,
        )
        if not quantize_4bit:
            model.to(device)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    return tokenizer, model
