"""Backends behind one interface: score a batch of token id sequences → (n, 3) probabilities.

A backend is opened inside its worker process (`open_backend(spec, device, threads)`), so only the
picklable `BackendSpec` crosses process boundaries. Tokenising and packing happen once, in the
parent, with the same packer the models were trained with.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

from competition.errors import InputError
from competition.labels import N_CLASSES
from inference.sources import MERGED_4BIT, check_merged_source, check_vllm_source, load_saved_classifier

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
    warmup_rows: int = 0  # benchmarks: rows of max_length scored once on opening, before the worker reports ready
    base_models: tuple[str, ...] = ()  # folders where a fold model's base may be (checked by identity)
    accept_merged_4bit: bool = False  # score a 4-bit-trained fold model on merged weights (another function)


def resolve_dtype_name(dtype: str, device: str) -> str:
    """auto: float32 on CPU, bfloat16 on CUDA of compute capability >= 8, float16 below (emulated bfloat16 is slow)."""
    from models.backbone import compute_dtype_name

    return compute_dtype_name(dtype, device)


class TransformersBackend:
    """A Hugging Face sequence classifier; each batch padded to its own longest row only.

    Scored by `models.transformer.batches.predict_batch`, the function the estimator's `predict_proba` uses:
    right-padded as in training whatever side the tokenizer pads on, so a fold model scores the same here.
    """

    def __init__(self, model, pad_token_id: int, device: str):
        self.model = model.eval()
        self.pad_token_id = int(pad_token_id)
        self.device = device
        self.opened_in = os.getpid()  # kept through pickling: a model opened elsewhere and passed along shows it

    @property
    def attention(self) -> str | None:
        from models.transformer.attention import attention_of

        return attention_of(self.model)

    @property
    def weights_on(self) -> str:
        """The device holding the model's weights (reported by the worker that opened it)."""
        return str(next(self.model.parameters()).device)

    def score(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        from models.transformer.batches import predict_batch

        return predict_batch(self.model, sequences, self.pad_token_id, self.device)


def open_transformers(spec: BackendSpec, device: str) -> TransformersBackend:
    from models.backbone import load_classifier
    from models.transformer.estimator import saved_settings

    if "+" in device:
        raise InputError("tensor parallelism is for the vLLM backend: a transformers worker holds a whole model on one GPU")
    dtype = resolve_dtype_name(spec.dtype, device)
    if spec.random_init:
        import torch

        torch.manual_seed(0)  # every worker draws the same weights (on the same kind of device), so workers agree
        tokenizer, model = load_classifier(spec.model_path, device, dtype, spec.quantize_4bit, random_init=True)
    elif saved_settings(spec.model_path):
        tokenizer, model = load_saved_classifier(
            spec.model_path, device, dtype, spec.quantize_4bit, spec.base_models, spec.accept_merged_4bit
        )
    else:
        check_merged_source(spec.model_path, spec.accept_merged_4bit)
        tokenizer, model = load_classifier(spec.model_path, device=device, dtype=dtype, quantize_4bit=spec.quantize_4bit)
    return TransformersBackend(model, tokenizer.pad_token_id, device)


class VllmBackend:
    """vLLM's offline classification (pooling) API. It schedules batches itself (continuous batching under its own
    memory budget), so it gets a whole shard per call, not the plan's token-budget batches."""

    schedules_itself = True

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
    """vLLM's pooling runner on `device`, which must be the only GPU this process sees once CUDA starts.

    `run_workers` starts a vLLM worker in a process of its own (for one device too), sets its
    CUDA_VISIBLE_DEVICES (`visible_device_for`) before anything in it imports vLLM or starts CUDA, and hands
    it "cuda:0"; called directly, in a fresh process, this pins `device` itself before importing vLLM. Workers
    are not daemonic, so vLLM starts its engine core in a child process as it does by default
    (VLLM_ENABLE_V1_MULTIPROCESSING is left as it is).

    A fold model saved by `train-transformer` is served from its merged copy (`inference.merge.ensure_merged`:
    the sibling folder `<model dir>-merged`, made once in the serving dtype and reused while the fold model is
    unchanged).
    """
    check_backend(spec, [device])
    check_vllm_source(spec.model_path, spec.base_models)
    pin_visible_device(device)
    from models.transformer.estimator import saved_settings

    dtype = resolve_dtype_name(spec.dtype, "cuda:0")  # the one visible GPU
    model_path = spec.model_path
    settings = saved_settings(model_path)
    if settings:
        from inference.merge import ensure_merged

        if settings[0].quantize_4bit and not spec.accept_merged_4bit:  # refused before an 18 GB merge is written
            raise InputError(MERGED_4BIT, model_path)
        model_path = str(ensure_merged(model_path, dtype, base_models=spec.base_models))
    else:
        check_merged_source(model_path, spec.accept_merged_4bit)
    try:
        import vllm
    except ImportError as err:  # installed but broken (e.g. built for another torch)
        raise InputError(f"{VLLM_MISSING}; importing it failed: {err}") from err
    kwargs = {"model": model_path, "dtype": dtype, "max_model_len": spec.max_length}
    if "+" in device:  # a tensor-parallel group: vLLM spreads the weights over the GPUs this process sees
        kwargs["tensor_parallel_size"] = len(device.split("+"))
    try:
        llm = vllm.LLM(runner="pooling", **kwargs)
    except TypeError:  # vLLM before 0.10 named the pooling runner a task
        llm = vllm.LLM(task="classify", **kwargs)
    return VllmBackend(llm)


def check_backend(spec: BackendSpec, devices: list[str]) -> None:
    """What a worker would refuse when it opens the backend, refused in the parent before anything is written."""
    if spec.kind not in BACKENDS:
        raise InputError(f"unknown backend {spec.kind!r} (known: {', '.join(BACKENDS)})")
    if spec.kind != "vllm":
        return
    if not vllm_available():
        raise InputError(VLLM_MISSING)
    off_gpu = [d for d in devices if not d.startswith("cuda")]
    if off_gpu:
        raise InputError(f"the vLLM backend runs on CUDA devices only, got {off_gpu[0]!r}")
    if spec.quantize_4bit:
        raise InputError("the vLLM backend takes merged, unquantised weights; set model.quantize_4bit = false")


def vllm_available() -> bool:
    """Whether vLLM is installed, found without importing it (an import may start CUDA before the GPU is pinned)."""
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
        return "vllm" in sys.modules


_CUDA_DEVICE = re.compile(r"cuda(?::(\d+))?")
# CUDA reads CUDA_VISIBLE_DEVICES up to its first entry that is neither an index nor a GPU/MIG UUID
_VISIBLE_ENTRY = re.compile(r"\d+|(GPU|MIG)-[\w./-]+")


def visible_device_for(device: str, parent_visible: str | None) -> str:
    """CUDA_VISIBLE_DEVICES that leaves a process `device` ("cuda:N", numbered as the parent sees its GPUs, or a
    tensor-parallel group "cuda:0+cuda:1") alone.

    With nothing set in the parent, N itself; otherwise the N-th entry of the parent's list: a parent with
    "2,3" gives cuda:1 the GPU "3", not "1". UUID entries (GPU-..., MIG-...) are kept as they are. Pure: the
    caller reads the parent's variable.
    """
    indices = []
    for part in device.split("+"):
        match = _CUDA_DEVICE.fullmatch(part.strip().lower())
        if match is None:
            raise InputError(f"{device!r} is not a CUDA device (cuda or cuda:N)")
        indices.append(int(match.group(1) or 0))
    if parent_visible is None:
        return ",".join(map(str, indices))
    entries = []
    for entry in (e.strip() for e in parent_visible.split(",")):
        if not _VISIBLE_ENTRY.fullmatch(entry):
            break
        entries.append(entry)
    if max(indices) >= len(entries):
        raise InputError(f"{device} is not visible: CUDA_VISIBLE_DEVICES={parent_visible!r} names {len(entries)} GPU(s)")
    return ",".join(entries[i] for i in indices)


def pin_visible_device(device: str) -> str:
    """Makes `device` the only GPU of this process (and of the processes it starts): CUDA_VISIBLE_DEVICES, mapped
    through the one already set. Takes effect only where CUDA has not started yet; a no-op for "cuda:0" in a
    process already pinned."""
    visible = visible_device_for(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != visible:
        log.warning(
            "CUDA started in this process before %s was pinned; only the processes it starts see GPU %s alone", device, visible
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    return visible


def pins_visible_device(factory) -> bool:
    """Whether a worker's backend factory opens vLLM, whose worker must see its GPU alone from its start.

    Recognised by the spec it opens: `partial(open_backend, spec)`, or any factory with a `spec` attribute.
    """
    spec = getattr(factory, "spec", None)
    if isinstance(factory, partial):
        spec = factory.keywords.get("spec", factory.args[0] if factory.args else None)
    return isinstance(spec, BackendSpec) and spec.kind == "vllm"


def open_backend(spec: BackendSpec, device: str, threads: int | None = None) -> Backend:
    """Opens `spec` on `device` (e.g. "cpu", "cuda:1"); `threads` caps torch's CPU threads."""
    if spec.kind not in BACKENDS:
        raise InputError(f"unknown backend {spec.kind!r} (known: {', '.join(BACKENDS)})")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from inference.gpu_plan import check_on_device

    check_on_device(spec, device)
    backend = open_vllm(spec, device) if spec.kind == "vllm" else open_transformers(spec, device)
    if spec.warmup_rows:  # CUDA context, kernel choice and allocator, paid before the timed work
        backend.score([[1] * spec.max_length] * spec.warmup_rows)
    return backend
