"""Backends behind one interface: score a batch of token id sequences → (n, 3) probabilities.

A backend is opened inside its worker process (`open_backend(spec, device, threads)`), so only the
picklable `BackendSpec` crosses process boundaries. Tokenising and packing happen once, in the
parent, with the same packer the models were trained with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from competition.errors import InputError
from competition.labels import N_CLASSES
from inference.sources import load_saved_classifier

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "vllm")
VLLM_MISSING = "the vLLM backend needs the optional GPU-only extra: pip install -r requirements-vllm.txt (Linux with CUDA)"


class Backend(Protocol):
    def score(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, 3) float64 probabilities (a, b, tie), one row per sequence, in the order given."""
        ...


@dataclass(frozen=True)
class BackendSpec:
    """Everything a worker needs to open its own copy of the model."""

    kind: str = "transformers"
    model_path: str = ""
    dtype: str = "auto"  # auto: bfloat16 on CUDA that supports it, float16 on older CUDA, float32 on CPU
    quantize_4bit: bool = False
    max_length: int = 1536
    random_init: bool = False  # benchmarks only: weights drawn from the config, no checkpoint needed


def resolve_dtype_name(dtype: str, device: str) -> str:
    """auto: float32 on CPU, bfloat16 on CUDA of compute capability >= 8, float16 below (emulated bfloat16 is slow)."""
    from models.transformer.loading import compute_dtype_name

    return compute_dtype_name(dtype, device)


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def free_memory(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


class TransformersBackend:
    """A Hugging Face sequence classifier; each batch padded to its own longest row only.

    Scored by `models.transformer.batches.predict_batch`, the function the estimator's `predict_proba` uses:
    right-padded as in training whatever side the tokenizer pads on, so a fold model scores the same here.
    """

    def __init__(self, model, pad_token_id: int, device: str):
        self.model = model.eval()
        self.pad_token_id = int(pad_token_id)
        self.device = device

    def score(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        from models.transformer.batches import predict_batch

        return predict_batch(self.model, sequences, self.pad_token_id, self.device)


def open_transformers(spec: BackendSpec, device: str) -> TransformersBackend:
    from models.transformer.estimator import saved_settings
    from models.transformer.loading import load_classifier

    dtype = resolve_dtype_name(spec.dtype, device)
    if spec.random_init:
        import torch

        torch.manual_seed(0)  # every worker draws the same weights (on the same kind of device), so workers agree
        tokenizer, model = load_classifier(spec.model_path, device, dtype, spec.quantize_4bit, random_init=True)
    elif saved_settings(spec.model_path):
        tokenizer, model = load_saved_classifier(spec.model_path, device, dtype, spec.quantize_4bit)
    else:
        tokenizer, model = load_classifier(spec.model_path, device=device, dtype=dtype, quantize_4bit=spec.quantize_4bit)
    return TransformersBackend(model, tokenizer.pad_token_id, device)


class VllmBackend:
    """vLLM's offline classification (pooling) API; it schedules the batch internally."""

    def __init__(self, llm):
        self.llm = llm

    def score(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        prompts = [{"prompt_token_ids": [int(t) for t in seq]} for seq in sequences]
        outputs = self.llm.classify(prompts, use_tqdm=False)
        probs = np.asarray([out.outputs.probs for out in outputs], dtype=np.float64)
        if probs.shape != (len(sequences), N_CLASSES):
            raise InputError(f"vLLM returned probabilities of shape {probs.shape}; the model must be a 3-label classifier")
        return probs


def open_vllm(spec: BackendSpec, device: str) -> VllmBackend:
    if not vllm_available():
        raise InputError(VLLM_MISSING)
    if not device.startswith("cuda"):
        raise InputError(f"the vLLM backend runs on CUDA devices only, got {device!r}")
    # vLLM takes the first visible GPU; this process was started for `device`, so make it the only one
    os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1] if ":" in device else "0"
    import vllm

    from models.transformer.estimator import saved_settings

    if spec.quantize_4bit:
        raise InputError("the vLLM backend takes merged, unquantised weights; set model.quantize_4bit = false")
    if saved_settings(spec.model_path):
        raise InputError(
            "the vLLM backend needs a Hugging Face directory with merged weights, not a train-transformer fold model; "
            "use --backend transformers",
            spec.model_path,
        )
    kwargs = {"model": spec.model_path, "dtype": resolve_dtype_name(spec.dtype, device), "max_model_len": spec.max_length}
    try:
        llm = vllm.LLM(runner="pooling", **kwargs)
    except TypeError:  # vLLM before 0.10 named the pooling runner a task
        llm = vllm.LLM(task="classify", **kwargs)
    return VllmBackend(llm)


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def open_backend(spec: BackendSpec, device: str, threads: int | None = None) -> Backend:
    """Opens `spec` on `device` (e.g. "cpu", "cuda:1"); `threads` caps torch's CPU threads."""
    if spec.kind not in BACKENDS:
        raise InputError(f"unknown backend {spec.kind!r} (known: {', '.join(BACKENDS)})")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if spec.kind == "vllm":
        return open_vllm(spec, device)
    return open_transformers(spec, device)
