"""The GPU path decided before any work: which dtype, quantization and parallelism score a model on the GPUs at
hand, or one line saying why the combination cannot run.

GPU classes: compute capability 7.5 (T4: 15 GB, float16 only, bfloat16 emulated and slow, no FlashAttention-2) and
8 or more (A100, L4, H100: bfloat16). Rules, per backend:
- dtype `auto`: bfloat16 at compute capability 8 or more, float16 below. bfloat16 asked for below 8 runs emulated
  in transformers (warned) and is refused by vLLM.
- transformers: every worker holds a whole copy, so weights plus a 2 GiB working reserve must fit one GPU; a model
  that does not fit is refused with the 4-bit setting that would (Gemma-2-9B: 17.2 GiB in float16, 5.7 in 4-bit).
- vLLM: merged, unquantized weights only (4-bit refused); Gemma-2 in float16 refused (vLLM refuses it: its
  activations overflow float16), so Gemma-2 on T4s goes through transformers in 4-bit; tensor parallelism is the
  fewest GPUs (a power of two dividing the attention and key/value heads) whose share of the weights plus the reserve
  fits 90 % of a GPU (vLLM's default memory share), refused beyond the GPUs given.
The table in docs/gpu.md is `plan_table()`'s output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from competition.errors import InputError
from models.transformer.attention import soft_caps
from models.transformer.capacity import architecture_shape, weight_bytes

log = logging.getLogger(__name__)

GIB = 1 << 30
RESERVE_BYTES = 2 * GIB  # activations of a prediction batch, CUDA context, allocator slack
VLLM_MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class GpuFacts:
    name: str
    capability: tuple[int, int]
    memory_bytes: int


@dataclass(frozen=True)
class GpuPlan:
    dtype: str
    tensor_parallel: int
    weight_gib_per_gpu: float


GPU_CLASSES = {  # for the table in docs/gpu.md; a run reads its own GPUs (`visible_gpus`)
    "T4": GpuFacts("T4", (7, 5), 15 * GIB),
    "L4": GpuFacts("L4", (8, 9), 24 * GIB),
    "A100-40GB": GpuFacts("A100-40GB", (8, 0), 40 * GIB),
    "H100-80GB": GpuFacts("H100-80GB", (9, 0), 80 * GIB),
}


def visible_gpus(devices: list[str]) -> list[GpuFacts]:
    """Facts of the CUDA devices named in `devices` ("cuda:N", or "cuda:0+cuda:1" groups)."""
    import torch

    out = []
    for device in (d for group in devices for d in group.split("+") if d.startswith("cuda")):
        props = torch.cuda.get_device_properties(torch.device(device))
        out.append(GpuFacts(props.name, (props.major, props.minor), int(props.total_memory)))
    return out


def plan_dtype(dtype: str, gpu: GpuFacts, backend: str) -> str:
    if dtype == "auto":
        return "bfloat16" if gpu.capability[0] >= 8 else "float16"
    if dtype == "bfloat16" and gpu.capability[0] < 8:
        if backend == "vllm":
            raise InputError(
                f"vLLM refuses bfloat16 on {gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}): set model.dtype = auto"
            )
        log.warning("bfloat16 on %s is emulated and slow: model.dtype = auto picks float16 there", gpu.name)
    return dtype


def plan(
    config: dict, backend: str, dtype: str, quantize_4bit: bool, gpus: list[GpuFacts], tensor_parallel: int | None = None
) -> GpuPlan:
    """The plan for a model (its config.json as a dict) on `gpus` (one entry per GPU given to the run)."""
    if not gpus:
        raise InputError("no GPU given to plan for")
    gpu = min(gpus, key=lambda g: (g.capability, g.memory_bytes))  # the weakest decides
    chosen = plan_dtype(dtype, gpu, backend)
    shape = architecture_shape(config)
    weights = weight_bytes(shape, chosen, quantize_4bit)
    if backend == "transformers":
        if (tensor_parallel or 1) != 1:
            raise InputError("tensor parallelism is for the vLLM backend; transformers workers each hold a whole model")
        if weights + RESERVE_BYTES > gpu.memory_bytes:
            hint = (
                ""
                if quantize_4bit
                else f"; in 4-bit it needs {weight_bytes(shape, chosen, True) / GIB:.1f} GiB: set model.quantize_4bit = true"
            )
            raise InputError(
                f"the weights need {weights / GIB:.1f} GiB in {chosen} and {gpu.name} has {gpu.memory_bytes / GIB:.0f} GiB{hint}"
            )
        return GpuPlan(chosen, 1, weights / GIB)
    if quantize_4bit:
        raise InputError("the vLLM backend takes merged, unquantised weights; set model.quantize_4bit = false")
    if soft_caps(config) and chosen == "float16":
        raise InputError(
            f"vLLM refuses float16 for {config.get('model_type')} and {gpu.name} has no bfloat16: use the transformers backend in 4-bit"
        )
    parallel = tensor_parallel or fewest_gpus(shape, weights, gpu, len(gpus))
    if parallel > len(gpus) or weights / parallel + RESERVE_BYTES > VLLM_MEMORY_SHARE * gpu.memory_bytes:
        raise InputError(
            f"the {weights / GIB:.1f} GiB of weights in {chosen} do not fit {parallel} of the {len(gpus)} GPU(s) given ({gpu.name})"
        )
    if shape["heads"] % parallel or shape["kv_heads"] % parallel:
        raise InputError(
            f"tensor parallelism {parallel} must divide the {shape['heads']} attention and {shape['kv_heads']} key/value heads"
        )
    return GpuPlan(chosen, parallel, weights / parallel / GIB)


def fewest_gpus(shape: dict, weights: float, gpu: GpuFacts, available: int) -> int:
    """The fewest GPUs, a power of two dividing the heads, whose share of the weights fits (more than `available`
    when none does, which `plan` refuses)."""
    parallel = 1
    while parallel <= available:
        divides = shape["heads"] % parallel == 0 and shape["kv_heads"] % parallel == 0
        if divides and weights / parallel + RESERVE_BYTES <= VLLM_MEMORY_SHARE * gpu.memory_bytes:
            return parallel
        parallel *= 2
    return parallel


def model_config(model_path: str, base_models=()) -> dict:
    """config.json of what will be scored: a fold model's base, or the directory itself."""
    from inference.sources import tokenizer_dir
    from models.transformer.model_files import read_json_object

    return read_json_object(Path(tokenizer_dir(model_path, base_models)) / "config.json")


def check_on_device(spec, device: str) -> None:
    """The plan's refusals inside a worker that opens `spec` on `device` (a GPU). Not for vLLM: reading the GPU's
    facts starts CUDA in the worker, which vLLM's engine process must not inherit (`decided` checks it before the
    workers start; on the Ray engine vLLM's own checks remain)."""
    if not device.startswith("cuda") or spec.random_init or spec.kind == "vllm":
        return
    gpus = visible_gpus([device])
    plan(model_config(spec.model_path, spec.base_models), spec.kind, spec.dtype, spec.quantize_4bit, gpus, len(gpus))


def plan_table(architectures: dict[str, dict]) -> list[dict]:
    """Every architecture × GPU class × backend/quantization: the plan, or why not (docs/gpu.md)."""
    rows = []
    for name, config in architectures.items():
        for gpu_name, gpu in GPU_CLASSES.items():
            for backend, quantize_4bit in (("transformers", True), ("transformers", False), ("vllm", False)):
                try:
                    decided = plan(config, backend, "auto", quantize_4bit, [gpu, gpu])
                    verdict = f"{decided.dtype}, tensor parallel {decided.tensor_parallel}, {decided.weight_gib_per_gpu:.1f} GiB per GPU"
                except InputError as err:
                    verdict = f"refused: {err}"
                rows.append(
                    {"model": name, "gpus": f"2 × {gpu_name}", "backend": backend, "4-bit": quantize_4bit, "plan": verdict}
                )
    return rows
