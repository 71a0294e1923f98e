"""Config of the blend stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BlendConfig:
    name: str = "blend"
    runs_dir: str = "runs"
    submissions_dir: str = "submissions"
    runs: tuple[str, ...] = ()  # run directories holding oof.parquet (and test.parquet)
    temperature: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name
