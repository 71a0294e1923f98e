"""ablate: drop each feature group in turn and report Δ log loss."""

from __future__ import annotations

import argparse

from competition.ablation import run_ablation, write_ablation
from competition.commands.spine import add_arguments as add_spine_arguments
from competition.commands.spine import spine_config
from competition.report import console, print_table


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_spine_arguments(parser, command)
    parser.add_argument("--groups", nargs="+", help="only ablate these groups (default: every group in the config)")


def main(args: argparse.Namespace) -> int:
    cfg = spine_config(args)
    table = run_ablation(cfg, tuple(args.groups) if args.groups else None)
    csv_path, png_path = write_ablation(cfg, table)
    print_table(f"ablation over {cfg.cv.folds} grouped folds", table)
    console.print(f"wrote {csv_path} and {png_path}")
    return 0
