"""`python -m competition submit`: a test file scored by a blend (or one run) into a validated submission; the
Kaggle bundle's entry point runs this command (stages/bundle.py)."""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, NAME, OUT, SET, Flag, config_from_args
from cli.report import print_mapping

BASE_MODEL = Flag(
    "--base-model", "base_models", "folder of a transformer fold model's base, checked by identity (repeatable)", action="append"
)
FLAGS = {
    "submit": (
        CONFIG,
        Flag("--blend", "blend", "a blend run: its weights over its runs"),
        Flag("--runs", "runs", "the runs to score (a blend's own, or one run alone)", nargs="+"),
        Flag("--test", "test", "test CSV (id, prompt, response_a, response_b)"),
        Flag("--submission", "submission", "submission CSV to write"),
        OUT,
        NAME,
        BASE_MODEL,
        Flag("--devices", "scoring.devices", "cpu | cpu:N | cuda:0,cuda:1 | gpu:N (one worker each)"),
        Flag("--threads", "scoring.threads", "torch CPU threads per worker", type=int),
        Flag("--dtype", "scoring.dtype", "compute dtype", choices=("auto", "float32", "bfloat16", "float16")),
        Flag("--token-budget", "scoring.token_budget", "padded tokens per batch (default: each fold model's own)", type=int),
        Flag("--time-budget", "time_budget_s", "seconds after which no shard starts (0: none)", type=float),
        Flag("--fresh", None, "discard finished shards instead of resuming", action="store_true"),
        SET,
    )
}


# flags only a transformer fold model's scoring reads
TRANSFORMER_ONLY = ("--base-model", "--devices", "--threads", "--dtype", "--token-budget", "--time-budget", "--fresh")


def main(args: argparse.Namespace) -> int:
    from stages.submit import SubmitConfig, run

    cfg = config_from_args(SubmitConfig, args, FLAGS["submit"])
    given = tuple(f.name for f in FLAGS["submit"] if f.name in TRANSFORMER_ONLY and getattr(args, f.dest, None) is not None)
    summary = run(cfg, fresh=bool(args.fresh), transformer_only_flags=given)
    shown = {k: summary[k] for k in ("submission", "rows", "rows_blended_from_fewer_runs", "seconds")}
    for name, facts in summary["components"].items():
        shown[f"{name}: models, rows unscored"] = f"{facts['models']}, {facts['rows_unscored']}"
    print_mapping("submit", shown)
    return 0
