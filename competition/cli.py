"""`python -m competition <command>`: a thin layer over each stage's importable `run(cfg)`.

Commands live in their own modules and are imported only when chosen, so `cv` never pays for torch.
Each command module exposes `add_arguments(parser)` and `main(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from competition.errors import InputError

COMMANDS: dict[str, tuple[str, str]] = {
    "cv": ("competition.commands.spine", "grouped cross-validation: out-of-fold report and predictions"),
    "fit": ("competition.commands.spine", "train on all training rows and save the model"),
    "predict": ("competition.commands.spine", "predict a test file with a fitted model and write a validated submission"),
    "ablate": ("competition.commands.ablate", "drop each feature group in turn: Δ log loss table, CSV and chart"),
    "blend": ("competition.commands.blend", "fit blend weights on several runs' out-of-fold predictions"),
    "run": ("competition.commands.spine", "the main job on the embedded sample: cv, fit, predict, summary"),
    "train-transformer": ("models.transformer.commands", "fine-tune a transformer classifier per fold (LoRA/QLoRA)"),
    "infer": ("inference.commands", "length-sorted token-budget batch inference over several devices"),
    "leaderboard": ("models.leaderboard.commands", "Bradley-Terry ratings with intervals from battles"),
    "prompt-leaderboard": ("models.leaderboard.commands", "rank models for one prompt from a model-aware predictor"),
    "route": ("models.routing.commands", "choose a model per prompt under a cost budget"),
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every command shares; each overrides the matching config field."""
    parser.add_argument("--config", help="TOML config file (lists only what it changes)")
    parser.add_argument("--train", help="training CSV in the Kaggle format")
    parser.add_argument("--test", help="test CSV (no labels or model columns needed)")
    parser.add_argument("--out", help="output: a run directory, or the submission CSV for predict")
    parser.add_argument("--folds", type=int, help="number of grouped folds")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--max-rows", type=int, help="read only the first N rows of each file (quick runs)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field, e.g. lgbm.learning_rate=0.05"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m competition", description="LMSYS arena preference prediction")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    known, rest = top.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if known.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module_name, help_text = COMMANDS[known.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        print(f"error: command {known.command!r} is unavailable ({err})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"python -m competition {known.command}", description=help_text)
    module.add_arguments(parser, known.command)
    args = parser.parse_args(rest)
    args.command = known.command
    try:
        return int(module.main(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
