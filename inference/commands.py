"""`python -m competition infer`: length-sorted token-budget inference over several devices, resumable."""

from __future__ import annotations

import argparse
import sys

from competition.cli import add_common_arguments
from competition.commands.common import config_from_args

# flag → config field
FLAG_FIELDS = {
    "out": "out",
    "test": "data.test",
    "max_rows": "data.max_rows",
    "model_path": "model.path",
    "backend": "model.backend",
    "dtype": "model.dtype",
    "max_length": "model.max_length",
    "token_budget": "batching.token_budget",
    "devices": "workers.devices",
    "swap_average": "swap.average",
    "placement": "swap.placement",
}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_common_arguments(parser)
    parser.add_argument("--model-path", help="local model directory (config.json, tokenizer, weights)")
    parser.add_argument("--backend", choices=("transformers", "vllm"), help="vllm needs requirements-vllm.txt and a GPU")
    parser.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--max-length", type=int, help="packed tokens per row (must match training)")
    parser.add_argument("--token-budget", type=int, help="padded tokens per batch")
    parser.add_argument("--devices", help="cpu | cpu:N | cuda | cuda:0,cuda:1 (one worker process each)")
    parser.add_argument("--swap-average", action="store_const", const=True, help="average with the A/B-swapped order")
    parser.add_argument(
        "--placement",
        choices=("balanced", "split"),
        help="swap averaging: spread both orders, or one order per half of the devices",
    )
    parser.add_argument("--fresh", action="store_true", help="discard finished shards instead of resuming")


def main(args: argparse.Namespace) -> int:
    from competition.report import print_mapping
    from inference.config import InferenceConfig
    from inference.engine import run
    from inference.workers import WorkerFailed

    cfg = config_from_args(InferenceConfig, args, FLAG_FIELDS)
    try:
        stats = run(cfg, fresh=args.fresh)
    except WorkerFailed as err:  # a crashed or killed worker: what happened and how to resume, no traceback
        print(f"infer: {err}", file=sys.stderr)
        return 1
    shown = (
        "rows",
        "items",
        "shards_scored",
        "shards_skipped",
        "devices",
        "padding_efficiency",
        "oom_splits",
        "run_seconds",
        "items_per_second",
        "predictions",
    )
    print_mapping(f"infer: {cfg.run_dir}", {k: stats[k] if not isinstance(stats[k], list) else ",".join(stats[k]) for k in shown})
    return 0
