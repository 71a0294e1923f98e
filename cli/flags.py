"""Flags that commands declare: each names the config field it sets, so a command accepts only the flags
it honours and `--help` lists exactly those.

Values reach the config as nested dicts ({"data": {"train": "t.csv"}}), never through text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from competition.config import load_config

C = TypeVar("C")


@dataclass(frozen=True)
class Flag:
    name: str  # "--train"
    field: str | None  # dotted config field it sets; None: read by the command itself
    help: str
    type: Callable[[str], Any] | None = str
    choices: tuple[str, ...] | None = None
    action: str | None = None  # e.g. "store_true"
    nargs: str | None = None
    required: bool = False

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        kwargs: dict[str, Any] = {"help": self.help, "dest": self.dest}
        if self.action:
            kwargs["action"] = self.action
            kwargs["default"] = None
        else:
            kwargs |= {"type": self.type, "choices": self.choices, "nargs": self.nargs, "required": self.required}
        parser.add_argument(self.name, **kwargs)


CONFIG = Flag("--config", None, "TOML config file (lists only what it changes)")
SET = Flag("--set", None, "override any config field, e.g. lgbm.learning_rate=0.05 (repeatable)", action="append")
OUT = Flag("--out", "out", "run directory for this command's outputs (default: runs_dir/name)")
NAME = Flag("--name", "name", "run name: outputs go to runs_dir/<name> unless --out is given")
TRAIN = Flag("--train", "data.train", "training CSV in the Kaggle format")
TEST = Flag("--test", "data.test", "test CSV (id, prompt, response_a, response_b); '' for none")
FOLDS = Flag("--folds", "cv.folds", "number of prompt-grouped folds", type=int)
SEED = Flag("--seed", "cv.seed", "random seed of the folds", type=int)
TEACHER = Flag("--teacher", "lgbm.teacher", "distil from this LightGBM cv run's recipe, refitted on inner folds")
TEACHER_WEIGHT = Flag("--teacher-weight", "lgbm.teacher_weight", "share of the teacher in the training targets", type=float)
STUDENT_TEACHER = Flag("--teacher", "train.teacher", "distil from this LightGBM cv run's recipe, refitted inside each fold")
STUDENT_TEACHER_WEIGHT = Flag(
    "--teacher-weight", "train.teacher_weight", "share of the teacher in the labelled rows' targets", type=float
)
UNLABELED = Flag("--unlabeled", "data.unlabeled", "pairs without labels, trained on the teacher's probabilities (pseudo-labels)")
MAX_ROWS = Flag(
    "--max-rows", "data.max_rows", "read only the first N training rows (quick runs; test files are read whole)", type=int
)


def add_flags(parser: argparse.ArgumentParser, flags: tuple[Flag, ...]) -> None:
    for flag in flags:
        flag.add_to(parser)


def nested(field: str, value: Any) -> dict:
    for part in reversed(field.split(".")):
        value = {part: value}
    return value


def overrides(args: argparse.Namespace, flags: tuple[Flag, ...]) -> list:
    """Nested-dict overrides from the flags that were given, then the `--set` texts (which win)."""
    out: list = []
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if flag.field is not None and value is not None:
            out.append(nested(flag.field, value))
    return out + list(getattr(args, "set", None) or [])


def peek_args(argv: list[str], flags: tuple[Flag, ...]) -> argparse.Namespace:
    """Only `flags` of a command line, the rest left for the command's own parser: what decides which flags it has."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_flags(parser, tuple(f for f in flags if not f.required))
    try:
        return parser.parse_known_args(argv)[0]
    except (argparse.ArgumentError, SystemExit):  # the command's own parser reports it, in one line
        return argparse.Namespace(**{f.dest: None for f in flags})


def config_from_args(cls: type[C], args: argparse.Namespace, flags: tuple[Flag, ...]) -> C:
    return load_config(cls, getattr(args, "config", None), overrides(args, flags))
