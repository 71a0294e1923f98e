"""ablate: drop each feature group in turn and report Δ log loss."""

from __future__ import annotations

import argparse

from cli.flags import (
    CONFIG,
    FOLDS,
    MAX_ROWS,
    NAME,
    OUT,
    SEED,
    SET,
    TEACHER,
    TEACHER_WEIGHT,
    TRAIN,
    Flag,
    config_from_args,
)
from cli.report import console, print_table
from stages.ablate import check_ablation_outputs, run_ablation, write_ablation
from stages.training import training_config

GROUPS = Flag(
    "--groups", None, "only ablate these groups, or 'distillation' (default: every group, and the teacher if set)", nargs="+"
)
FLAGS = {"ablate": (CONFIG, TRAIN, OUT, NAME, FOLDS, SEED, MAX_ROWS, TEACHER, TEACHER_WEIGHT, GROUPS, SET)}


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(training_config("lgbm"), args, FLAGS["ablate"])
    check_ablation_outputs(cfg)
    table = run_ablation(cfg, tuple(args.groups) if args.groups else None)
    csv_path, png_path = write_ablation(cfg, table)
    print_table(f"ablation over {cfg.cv.folds} grouped folds", table)
    console.print(f"wrote {csv_path} and {png_path}")
    return 0
