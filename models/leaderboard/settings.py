"""Configs of `leaderboard` and `prompt-leaderboard`; files under configs/leaderboard/ list only what they change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from competition.settings import LGBMConfig
from features.registry import DEFAULT_GROUPS


@dataclass(frozen=True)
class BattleData:
    battles: str = "data/sample/train.csv.xz"
    both_bad: str = "tie"  # "tie": a both-bad vote is a tie; "drop": left out of the fit
    max_rows: int | None = None


@dataclass(frozen=True)
class FitConfig:
    tie_model: str = "half"  # "half" | "rao-kupper" | "davidson"
    l2: float = 0.0  # ridge on ratings (logits) per battle; 0 is plain maximum likelihood
    anchor: float = 1000.0  # the mean rating, or the rating of anchor_model
    anchor_model: str | None = None
    # Style control: feature-registry columns (A minus B) as covariates, e.g. "lengths__logratio_tokens".
    # Needs a file with texts (Kaggle layout); ratings then compare models at equal style.
    style_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntervalConfig:
    methods: tuple[str, ...] = ("sandwich", "bootstrap")  # the first one is plotted and ranks the table
    level: float = 0.95
    bootstrap_rounds: int = 100


@dataclass(frozen=True)
class HoldoutConfig:
    share: float = 0.2  # 0 skips the held-out evaluation
    split: str = "random"  # "random" | "row_order" (a time split when rows are in time order)


@dataclass(frozen=True)
class LeaderboardConfig:
    name: str = "sample"
    runs_dir: str = "runs"
    seed: int = 42
    data: BattleData = field(default_factory=BattleData)
    fit: FitConfig = field(default_factory=FitConfig)
    intervals: IntervalConfig = field(default_factory=IntervalConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / "leaderboard" / self.name


@dataclass(frozen=True)
class PairData:
    train: str = "data/sample/train.csv.xz"  # pairs with texts, model names and labels
    grades: str | None = None  # optional question_id, model, grade: the per-prompt truth to compare with
    max_rows: int | None = None


@dataclass(frozen=True)
class PromptLeaderboardConfig:
    name: str = "sample"
    runs_dir: str = "runs"
    seed: int = 42
    folds: int = 5
    data: PairData = field(default_factory=PairData)
    groups: tuple[str, ...] = DEFAULT_GROUPS  # feature groups; model_names is added by the model-aware predictor
    cache_dir: str | None = "runs/cache/features"
    lgbm: LGBMConfig = field(default_factory=LGBMConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / "prompt_leaderboard" / self.name
