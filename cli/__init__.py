"""`python -m competition <command>`: the top layer. It wires the stages together; nothing imports it.

Each command module declares `FLAGS` (command name → the flags it honours, each bound to a config field)
and `main(args) -> int`; modules are imported only when their command is chosen, so `cv` never pays for
torch. Expected errors (bad input or settings) print one line and exit 2; anything else is a bug: one
line and exit 1, with the traceback under `-v`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from competition.errors import InputError

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cli.training", "the main job on the embedded sample: cv, fit, predict, summary"),
    "cv": ("cli.training", "grouped cross-validation of any model family: out-of-fold report and predictions"),
    "fit": ("cli.training", "train on all training rows and save the model"),
    "predict": ("cli.training", "predict a test file with a fitted model and write a validated submission"),
    "ablate": ("cli.ablate", "drop each feature group in turn: Δ log loss table, CSV and chart"),
    "blend": ("cli.blend", "fit blend weights on several runs' out-of-fold predictions"),
    "train-transformer": ("cli.training", "cv of the transformer family: fine-tune a classifier per fold (LoRA/QLoRA)"),
    "infer": ("cli.infer", "length-sorted token-budget batch inference over several devices"),
    "leaderboard": ("cli.leaderboard", "Bradley-Terry ratings with intervals from battles"),
    "prompt-leaderboard": ("cli.leaderboard", "rank models for one prompt from a model-aware predictor"),
    "route": ("cli.route", "choose a model per prompt under a cost budget"),
    "features": ("cli.features", "build a file's feature table as parquet parts, here or on a Ray cluster"),
    "arena": ("cli.arena", "rank models from automatic pairwise judgments (binary insertion, Bradley-Terry)"),
    "dissect": ("cli.dissect", "which answer properties move a judge: effects with credible intervals"),
    "recipe": ("cli.recipe", "the whole ensemble from a training file to a submission, resumable stage by stage"),
    "train-p2l": ("cli.training", "cv of the p2l family: per-prompt Bradley-Terry coefficients from the prompt alone"),
    "submit": ("cli.submit", "score a test file with a blend (or one run) into a validated submission, resumably"),
    "bundle": ("cli.bundle", "write an offline Kaggle bundle: the project, wheels, the chosen runs, one entry point"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other input error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m competition", description="LMSYS arena preference prediction")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(command: str, argv: list[str] | None = None):
    """(parser, module) of one command: its own flags and nothing else. A module whose flags depend on the command
    line (the training commands: on the model family) says which through `flags_for(command, argv)`."""
    from cli.flags import add_flags

    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = OneLineParser(prog=f"python -m competition {command}", description=help_text)
    flags = module.flags_for(command, argv or []) if hasattr(module, "flags_for") else module.FLAGS[command]
    add_flags(parser, flags)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    known, rest = top.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if known.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        parser, module = command_parser(known.command, rest)
    except ModuleNotFoundError as err:
        print(f"error: command {known.command!r} is unavailable ({err})", file=sys.stderr)
        return 2
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(rest)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return int(done.code or 0)
    args.command, args.argv = known.command, rest
    try:
        return int(module.main(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not bad input: keep it short unless asked
        if known.verbose:
            traceback.print_exc()
        else:
            text = " ".join(str(err).split())[:300]
            print(
                f"error: internal error in {known.command}: {type(err).__name__}: {text} (rerun with -v for details)",
                file=sys.stderr,
            )
        return 1
