"""`python -m competition infer`: length-sorted token-budget inference over several devices, resumable."""

from __future__ import annotations

import argparse
import sys

from cli.flags import CONFIG, NAME, OUT, SET, Flag, config_from_args

BASE_MODEL = Flag(
    "--base-model", "model.base_models", "folder of a fold model's base model, checked by identity (repeatable)", action="append"
)
ACCEPT_MERGED_HELP = "score a 4-bit-trained fold model on merged weights (its probabilities move)"

TEST = Flag("--test", "data.test", "CSV to score (id, prompt, response_a, response_b)")
FLAGS = {
    "infer": (
        CONFIG,
        TEST,
        OUT,
        NAME,
        Flag("--model-path", "model.path", "local model directory (config.json, tokenizer, weights) or a fold model"),
        BASE_MODEL,
        Flag("--accept-merged-4bit", "model.accept_merged_4bit", ACCEPT_MERGED_HELP, action="store_true"),
        Flag("--backend", "model.backend", "vllm needs requirements-vllm.txt and a GPU", choices=("transformers", "vllm")),
        Flag("--dtype", "model.dtype", "compute dtype", choices=("auto", "float32", "bfloat16", "float16")),
        Flag("--max-length", "model.max_length", "packed tokens per row (must match training)", type=int),
        Flag("--token-budget", "batching.token_budget", "padded tokens per batch", type=int),
        Flag("--devices", "workers.devices", "cpu | cpu:N | cuda | cuda:0,cuda:1 (one worker process each)"),
        Flag("--engine", "workers.engine", "local worker processes, or actors on a Ray cluster", choices=("local", "ray")),
        Flag("--ray-address", "workers.ray_address", "ray engine: '' starts a local instance, auto, or HOST:PORT"),
        Flag("--swap-average", "swap.average", "average with the A/B-swapped order", action="store_true"),
        Flag(
            "--placement",
            "swap.placement",
            "swap averaging: spread both orders, or one order per half of the devices",
            choices=("balanced", "split"),
        ),
        Flag("--fresh", None, "discard finished shards instead of resuming", action="store_true"),
        SET,
    )
}


def main(args: argparse.Namespace) -> int:
    from cli.report import print_mapping
    from inference.config import InferenceConfig
    from inference.workers import WorkerFailed
    from stages.infer import run_infer

    cfg = config_from_args(InferenceConfig, args, FLAGS["infer"])
    try:
        stats = run_infer(cfg, fresh=bool(args.fresh))
    except WorkerFailed as err:  # a crashed or killed worker: what happened and how to resume, one line
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
