"""Config of the blend stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from competition.config import require
from competition.settings import run_directory


@dataclass(frozen=True)
class BlendConfig:
    name: str = "blend"
    runs_dir: str = "runs"
    out: str = ""  # run directory; empty: runs_dir/name
    submissions_dir: str = "submissions"
    submission: str = ""  # the blended submission CSV; empty: submissions_dir/<name>.csv
    runs: tuple[str, ...] = ()  # run directories holding oof.parquet (and test.parquet)
    temperature: bool = False

    def __post_init__(self) -> None:
        require(len(self.runs) >= 1, "runs", "must name at least one run directory (--runs)")

    @property
    def run_dir(self) -> Path:
        return run_directory(self.out, self.runs_dir, self.name)

    @property
    def submission_path(self) -> Path:
        return Path(self.submission) if self.submission else run_directory("", self.submissions_dir, f"{self.name}.csv")
