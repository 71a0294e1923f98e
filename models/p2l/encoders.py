"""Prompts as vectors: a local backbone pooled per prompt, and the registry's prompt columns.

The backbone loads by train-transformer's rules (models/transformer/loading.py: local files only, the same
dtype and 4-bit rules), as a bare `AutoModel`: P2L reads one pooled hidden state per prompt, not a class head.
Frozen embeddings are computed once per (encoder, prompt text) and kept in a parquet cache, so the five folds,
the inner folds and every later use of a run share one pass over the prompts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from competition.rundir import ABSENT, SEALED, UNSEALED, WHY, seal_state, write_sealed
from models.p2l.settings import EncoderConfig

log = logging.getLogger(__name__)


def prompt_text(turns: list[str | None]) -> str:
    return "\n".join(t or "" for t in turns)


def load_backbone(encoder: EncoderConfig, device):
    """(tokenizer, AutoModel) from the local directory, on `device`, without its KV cache."""
    from transformers import AutoModel

    from models.backbone import check_model_dir, compute_dtype_name, load_tokenizer, quantization_config, resolve_dtype

    path = check_model_dir(encoder.resolved_path())
    tokenizer = load_tokenizer(path)
    torch_dtype = resolve_dtype(compute_dtype_name(encoder.dtype, device))
    quantized = (
        {"quantization_config": quantization_config(torch_dtype), "device_map": {"": device}} if encoder.quantize_4bit else {}
    )
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch_dtype, **quantized)
    if not encoder.quantize_4bit:
        model.to(device)
    model.config.use_cache = False
    return tokenizer, model


def tokenize(tokenizer, texts: list[str], max_tokens: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]


def pool(hidden, mask, pooling: str):
    """One float32 vector per prompt: the mean over its tokens, or its last token (sequences are right-padded)."""
    import torch

    hidden = hidden.float()
    if pooling == "last":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def encode_batch(model, sequences: list[list[int]], pad_id: int, pooling: str, device):
    """Pooled, L2-normalised float32 vectors of one batch (gradients flow when enabled by the caller)."""
    import torch

    from models.transformer.batches import autocast, collate

    batch = collate(sequences, pad_id, device)
    with autocast(model, device):
        hidden = model(**batch).last_hidden_state
    return torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], pooling), dim=1)


def longest_first_batches(sequences: list[list[int]], size: int) -> list[np.ndarray]:
    """Row indices cut into batches of `size`, longest sequences first (out-of-memory shows at once, padding is small)."""
    order = np.argsort([-len(s) for s in sequences], kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def encoder_key(encoder: EncoderConfig) -> str:
    """What decides a frozen embedding besides the text: the model (its config), pooling, length and dtype."""
    path = Path(encoder.resolved_path())
    config = path / "config.json"
    config_digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""
    identity = [str(path.resolve()), config_digest, encoder.pooling, encoder.max_tokens, encoder.dtype]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def compute_embeddings(encoder: EncoderConfig, texts: list[str], device, num_threads: int) -> np.ndarray:
    import torch

    if torch.device(device).type == "cpu":
        torch.set_num_threads(num_threads)
    tokenizer, model = load_backbone(encoder, device)
    model.eval()
    sequences = tokenize(tokenizer, texts, encoder.max_tokens)
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float64)
    with torch.inference_mode():
        for rows in longest_first_batches(sequences, encoder.batch_size):
            vectors = encode_batch(model, [sequences[i] for i in rows], tokenizer.pad_token_id, encoder.pooling, device)
            out[rows] = vectors.double().cpu().numpy()
    return out


def frozen_embeddings(encoder: EncoderConfig, texts: list[str], device, num_threads: int) -> np.ndarray:
    """(n, hidden) float64 embeddings of `texts`; those in the cache are read, the rest computed and added."""
    keys = [text_key(t) for t in texts]
    cache = Path(encoder.cache_dir) / f"p2l-embeddings-{encoder_key(encoder)}.parquet" if encoder.cache_dir else None
    known: dict[str, np.ndarray] = {}
    state = seal_state(cache, encoder_key(encoder)) if cache is not None else ABSENT
    if state == SEALED:
        stored = pd.read_parquet(cache)
        known = dict(zip(stored["key"], map(np.asarray, stored["vector"]), strict=True))
    elif state not in (ABSENT, UNSEALED):
        log.warning("embedding cache %s %s: computed again", cache, WHY[state])
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        log.info("embedding %d prompts (%d cached)", len(missing), len(set(keys)) - len(missing))
        vectors = compute_embeddings(encoder, [t for _, t in missing], device, num_threads)
        known |= {k: v for (k, _), v in zip(missing, vectors, strict=True)}
        if cache is not None:
            table = pd.DataFrame({"key": list(known), "vector": [v.tolist() for v in known.values()]})
            write_sealed(cache, lambda p: table.to_parquet(p, index=False), encoder_key(encoder))
    return np.stack([known[k] for k in keys]).astype(np.float64)


def prompt_columns(prompts: list[list[str | None]]) -> np.ndarray:
    """The registry's prompt-only columns (lengths, code request, non-ASCII share), log1p'd: all are non-negative
    counts or shares, and a very long prompt must not land a dozen standard deviations out."""
    from features.prompt_columns import registry_prompt_features

    return np.log1p(registry_prompt_features(prompts).to_numpy(dtype=np.float64))
