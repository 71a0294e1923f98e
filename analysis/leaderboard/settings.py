"""Configs of `leaderboard` and `prompt-leaderboard`; files under configs/leaderboard/ list only what they change.

Each run goes to `--out`, else runs_dir/<name> (default names leaderboard/sample, prompt_leaderboard/sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from competition.config import finite, require
from competition.rundir import RunKind
from competition.settings import CVConfig, DataConfig, RunLocation
from data.battles import BOTH_BAD_POLICIES, SPLITS
from data.tables import check_names
from features.registry import FeatureConfig
from models.bradley_terry import TIE_MODELS
from models.lgbm import LGBMConfig

INTERVAL_METHODS = ("sandwich", "bootstrap")


@dataclass(frozen=True)
class BattleData:
    battles: str = "data/sample/train.csv.xz"
    both_bad: str = "tie"  # "tie": a both-bad vote is a tie; "drop": left out of the fit
    max_rows: int | None = None

    def __post_init__(self) -> None:
        require(bool(self.battles), "battles", "must name a battles file")
        require(self.both_bad in BOTH_BAD_POLICIES, "both_bad", f"must be one of {', '.join(BOTH_BAD_POLICIES)}")
        require(self.max_rows is None or self.max_rows >= 1, "max_rows", "must be at least 1 (or unset for every row)")


@dataclass(frozen=True)
class FitConfig:
    tie_model: str = "half"  # "half" | "rao-kupper" | "davidson"
    l2: float = 0.0  # ridge on ratings (logits) per battle; 0 is plain maximum likelihood
    anchor: float = 1000.0  # the mean rating, or the rating of anchor_model
    anchor_model: str | None = None
    # Style control: feature-registry columns (A minus B) as covariates, e.g. "lengths__logratio_tokens".
    # Needs a file with texts (Kaggle layout); ratings then compare models at equal style.
    style_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(self.tie_model in TIE_MODELS, "tie_model", f"must be one of {', '.join(TIE_MODELS)}")
        require(finite(self.l2) and self.l2 >= 0, "l2", "must be >= 0 and finite")
        require(finite(self.anchor), "anchor", "must be finite")
        require(self.anchor_model is None or bool(self.anchor_model.strip()), "anchor_model", "must not be empty")
        require(all(self.style_features), "style_features", "must not hold an empty name")
        require(len(set(self.style_features)) == len(self.style_features), "style_features", "must not repeat a feature")


@dataclass(frozen=True)
class IntervalConfig:
    methods: tuple[str, ...] = ("sandwich", "bootstrap")  # the first one is plotted and ranks the table
    level: float = 0.95
    bootstrap_rounds: int = 100  # 0: no bootstrap (the bootstrap method is skipped)
    # A model with fewer battles gets no interval (NaN bounds, `too_few_battles`, no rank): its rating is barely identified.
    min_battles: int = 20

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in INTERVAL_METHODS]
        require(not unknown, "methods", f"has unknown method {unknown[:1]} (known: {', '.join(INTERVAL_METHODS)})")
        require(len(set(self.methods)) == len(self.methods), "methods", "must not repeat a method")
        require(finite(self.level) and 0 < self.level < 1, "level", "must be between 0 and 1 (e.g. 0.95)")
        require(self.bootstrap_rounds == 0 or 2 <= self.bootstrap_rounds <= 100_000, "bootstrap_rounds", "must be 0 or 2..100000")
        require(self.min_battles >= 0, "min_battles", "must be >= 0")

    @property
    def active(self) -> tuple[str, ...]:
        """The methods computed: bootstrap only with bootstrap_rounds > 0."""
        return tuple(m for m in self.methods if m != "bootstrap" or self.bootstrap_rounds > 0)


@dataclass(frozen=True)
class HoldoutConfig:
    share: float = 0.2  # 0 skips the held-out evaluation
    split: str = "random"  # "random" | "row_order" (a time split when rows are in time order)

    def __post_init__(self) -> None:
        require(finite(self.share) and 0 <= self.share < 1, "share", "must be in [0, 1)")
        require(self.split in SPLITS, "split", f"must be one of {', '.join(SPLITS)}")


@dataclass(frozen=True)
class LeaderboardConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.LEADERBOARD
    name: str = "leaderboard/sample"
    seed: int = 42
    data: BattleData = field(default_factory=BattleData)
    fit: FitConfig = field(default_factory=FitConfig)
    intervals: IntervalConfig = field(default_factory=IntervalConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)

    def inputs(self) -> list[str | None]:
        return [self.data.battles]


@dataclass(frozen=True)
class PairData(DataConfig):
    """Pairs with texts, model names and labels (`train`, `extra`); `test`: a CSV whose row `row` holds the prompt."""

    grades: str | None = None  # optional question_id, model, grade: the per-prompt truth to compare with
    test: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.train), "train", "must name a pairs file")


@dataclass(frozen=True)
class P2LUse:
    """prompt-leaderboard from a fitted train-p2l run instead of the model-aware predictor (models/p2l/)."""

    run: str = ""  # the train-p2l run directory; empty: the model-aware LightGBM predictor
    prompts: str = ""  # a CSV with a prompt column: one aggregate leaderboard over all its prompts
    level: float = 0.95  # of the jackknife intervals over the run's fold models

    def __post_init__(self) -> None:
        require(finite(self.level) and 0 < self.level < 1, "level", "must be between 0 and 1 (e.g. 0.95)")


@dataclass(frozen=True)
class PromptLeaderboardConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.PROMPT_LEADERBOARD
    name: str = "prompt_leaderboard/sample"
    # The prompt: one of its question_id (or the prompt hash), its text, or a row (from 1) of data.test.
    prompt_id: str = ""
    prompt: str = ""
    row: int | None = None
    models: tuple[str, ...] = ()  # models to rank; empty: every model that answered the prompt
    evaluate: bool = False  # also measure the model-aware predictor out of fold
    data: PairData = field(default_factory=PairData)
    cv: CVConfig = field(default_factory=CVConfig)
    # feature groups of the predictor; model_names is added by the model-aware predictor
    features: FeatureConfig = field(default_factory=FeatureConfig)
    lgbm: LGBMConfig = field(default_factory=LGBMConfig)
    p2l: P2LUse = field(default_factory=P2LUse)

    def __post_init__(self) -> None:
        chosen = [k for k, v in (("prompt_id", self.prompt_id), ("prompt", self.prompt), ("row", self.row)) if v]
        require(len(chosen) <= 1, "prompt_id/prompt/row", f"name the prompt once (got {', '.join(chosen)})")
        require(self.row is None or self.row >= 1, "row", "must be at least 1 (rows are numbered from 1)")
        require(len(self.models) != 1, "models", "must name at least two models to rank (or none for all)")
        check_names(self.models, "models")

    def inputs(self) -> list[str | None]:
        return [self.data.train, self.data.grades, self.data.test, self.p2l.run, self.p2l.prompts]

    def side_outputs(self) -> list[str | None]:
        return [self.cv.fold_dir, self.features.cache_dir]
