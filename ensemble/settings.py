"""Config of the blend stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from competition.config import require
from competition.rundir import RunKind
from competition.settings import RunLocation, submission_file


@dataclass(frozen=True)
class BlendConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.BLEND
    name: str = "blend"
    submissions_dir: str = "submissions"
    submission: str = ""  # the blended submission CSV; empty: submissions_dir/<name>.csv
    runs: tuple[str, ...] = ()  # run directories holding oof.parquet (and test.parquet)
    temperature: bool = False

    def __post_init__(self) -> None:
        require(len(self.runs) >= 1, "runs", "must name at least one run directory (--runs)")

    @property
    def submission_path(self) -> Path:
        return submission_file(self.submission, self.submissions_dir, self.name)

    def inputs(self) -> list[str | None]:
        return list(self.runs)

    def output_files(self) -> list[str | Path | None]:
        return [self.submission_path]
