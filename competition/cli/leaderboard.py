"""CLI of `leaderboard` (Bradley-Terry from battles) and `prompt-leaderboard` (one prompt, predicted)."""

from __future__ import annotations

import argparse

from competition.cli import add_common_arguments
from competition.config import load_config
from competition.errors import InputError
from competition.report import print_mapping, print_table


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_common_arguments(parser)
    if command == "leaderboard":
        parser.add_argument("--tie-model", choices=("half", "rao-kupper", "davidson"), help="how ties enter the likelihood")
        parser.add_argument("--bootstrap", type=int, help="bootstrap rounds (0 keeps only the sandwich intervals)")
    else:
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--prompt-id",
            help="question_id of the prompt in the training file (without that column: the prompt hash the output names)",
        )
        which.add_argument("--prompt", help="prompt text; it must occur in the training file (its answers are needed)")
        which.add_argument("--row", type=int, help="row (from 1) of --test whose prompt to rank models for")
        parser.add_argument("--models", help="comma-separated models to rank (default: every model that answered)")
        parser.add_argument("--evaluate", action="store_true", help="also measure the model-aware predictor out of fold")


def _overrides(args: argparse.Namespace, data_key: str) -> list[str]:
    sets = list(args.set)
    pairs = {f"data.{data_key}": args.train, "data.max_rows": args.max_rows, "seed": args.seed, "name": args.out}
    sets += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in pairs.items() if v is not None]
    if getattr(args, "tie_model", None):
        sets.append(f"fit.tie_model={args.tie_model!r}")
    if getattr(args, "bootstrap", None) is not None:
        sets.append(f"intervals.bootstrap_rounds={args.bootstrap}")
        if args.bootstrap == 0:
            sets.append('intervals.methods=["sandwich"]')
    if getattr(args, "folds", None) is not None and data_key == "train":
        sets.append(f"folds={args.folds}")
    return sets


def main(args: argparse.Namespace) -> int:
    if args.command == "leaderboard":
        from models.leaderboard.ratings import run
        from models.leaderboard.settings import LeaderboardConfig

        cfg = load_config(LeaderboardConfig, args.config, _overrides(args, "battles"))
        result = run(cfg)
        first = cfg.intervals.methods[0] if cfg.intervals.methods else None
        columns = (
            ["rank_ub", "model", "rating", f"{first}_lower", f"{first}_upper", "battles"]
            if first
            else ["model", "rating", "battles"]
        )
        shown = result.table[columns].head(25).round(1)
        print_table(
            f"Bradley-Terry leaderboard ({cfg.fit.tie_model} ties), top {len(shown)} of {len(result.table)}", shown, digits=1
        )
        if result.holdout:
            print_mapping(f"held-out battles ({cfg.holdout.split} split, {cfg.holdout.share:.0%})", result.holdout)
        print(f"wrote {result.run_dir}")
        return 0
    from models.leaderboard.prompt import run_prompt_leaderboard
    from models.leaderboard.settings import PromptLeaderboardConfig

    cfg = load_config(PromptLeaderboardConfig, args.config, _overrides(args, "train"))
    models = tuple(m.strip() for m in args.models.split(",")) if args.models else None
    if args.row is not None and not args.test:
        raise InputError("--row needs --test (the CSV whose row holds the prompt)")
    result = run_prompt_leaderboard(
        cfg,
        prompt_id=args.prompt_id,
        prompt_text=args.prompt,
        test_path=args.test,
        row=args.row,
        models=models,
        evaluate=args.evaluate,
    )
    print_table(f"predicted leaderboard for prompt {result.prompt_key}", result.table, digits=3)
    if result.evaluation:
        print_mapping("model-aware predictor, out of fold (grouped by prompt)", result.evaluation)
    print(f"wrote {result.run_dir}")
    return 0
