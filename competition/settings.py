"""Config sections every stage shares: the data files, the fold settings, and where a run's outputs go.

Each stage's own config (LightGBM spine, transformer, inference, ...) composes these; `configs/*.toml`
list only what they change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from competition.config import require
from competition.errors import InputError

MAX_FOLDS = 100


@dataclass(frozen=True)
class DataConfig:
    train: str = "data/sample/train.csv.xz"
    test: str = "data/sample/test.csv"
    extra: str | None = None  # labelled rows in the same format, appended to train without duplicates
    max_rows: int | None = None  # quick runs: only the first training rows (test files are always read whole)

    def __post_init__(self) -> None:
        require(self.max_rows is None or self.max_rows >= 1, "max_rows", "must be at least 1 (or unset for every row)")


@dataclass(frozen=True)
class CVConfig:
    folds: int = 5
    seed: int = 42
    # where fold tables are written once per data file and settings, and read by every stage
    fold_dir: str = "runs/folds"

    def __post_init__(self) -> None:
        require(2 <= self.folds <= MAX_FOLDS, "folds", f"must be between 2 and {MAX_FOLDS}")


@dataclass(frozen=True)
class RunLocation:
    """Where a stage's run goes; every stage config starts with these fields (and may change their defaults)."""

    name: str = "run"
    runs_dir: str = "runs"
    out: str = ""  # the run directory (`--out`); empty: runs_dir/name

    @property
    def run_dir(self) -> Path:
        return run_directory(self.out, self.runs_dir, self.name)

    def inputs(self) -> list[str | None]:
        """Files and folders the stage reads: no output may overwrite, sit inside or hold one."""
        return []

    def side_outputs(self) -> list[str | None]:
        """Folders the stage writes besides its run (fold tables, caches)."""
        return []

    def output_files(self) -> list[str | Path | None]:
        """Files the stage writes besides its run (a submission)."""
        return []


def submission_file(submission: str, submissions_dir: str, name: str) -> Path:
    """The submission CSV: `submission` when given, else submissions_dir/<name>.csv."""
    return Path(submission) if submission else run_directory("", submissions_dir, f"{name}.csv")


def run_directory(out: str | None, runs_dir: str, name: str) -> Path:
    """Where a run writes: `out` when given (the `--out` flag of every command), else runs_dir/name."""
    if out:
        return Path(out)
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise InputError(f"run name {name!r} must be a relative path inside runs_dir (or pass --out)")
    return Path(runs_dir) / name
