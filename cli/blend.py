"""blend: weights over several runs' out-of-fold predictions, applied to their test predictions."""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, NAME, OUT, SET, Flag, config_from_args
from cli.report import print_table
from ensemble.settings import BlendConfig
from stages.blend import run_blend

RUNS = Flag("--runs", "runs", "run directories with oof.parquet (and test.parquet)", nargs="+")


TEMPERATURE = Flag("--temperature", "temperature", "also fit a temperature", action="store_true")


SUBMISSION = Flag("--submission", "submission", "blended submission CSV (default: submissions_dir/<name>.csv)")


FLAGS = {"blend": (CONFIG, RUNS, OUT, NAME, TEMPERATURE, SUBMISSION, SET)}


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(BlendConfig, args, FLAGS["blend"])
    report = run_blend(cfg)
    print_table(f"blend of {len(cfg.runs)} runs (out-of-fold, rows shared by all runs)", report.drop(columns=["prior_log_loss"]))
    return 0
