"""Config of the spine (cv, fit, predict, ablate, run). `configs/*.toml` list only what they change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from features.registry import DEFAULT_GROUPS


@dataclass(frozen=True)
class DataConfig:
    train: str = "data/sample/train.csv.xz"
    test: str = "data/sample/test.csv"
    extra: str | None = None  # labelled rows in the same format, appended to train without duplicates
    max_rows: int | None = None  # quick runs: read only the first rows of each file


@dataclass(frozen=True)
class CVConfig:
    folds: int = 5
    seed: int = 42


@dataclass(frozen=True)
class FeatureConfig:
    groups: tuple[str, ...] = DEFAULT_GROUPS
    cache_dir: str | None = "runs/cache/features"


@dataclass(frozen=True)
class LGBMConfig:
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 10.0
    max_rounds: int = 3000
    early_stopping_rounds: int = 100
    # Early stopping watches prompts held out of the training part, never the fold being scored.
    early_stopping_share: float = 0.15
    swap_augment: bool = True
    swap_average: bool = True
    num_threads: int = 2


@dataclass(frozen=True)
class SpineConfig:
    name: str = "lgbm_base"
    runs_dir: str = "runs"
    submissions_dir: str = "submissions"
    data: DataConfig = field(default_factory=DataConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    lgbm: LGBMConfig = field(default_factory=LGBMConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name
