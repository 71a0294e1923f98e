"""Config of `route`. The cost table is illustrative (the data has no prices): see configs/routing/bench.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RoutingData:
    # question_id, model, grade: every model's grade on every prompt. Empty: the quality of a model on a
    # prompt is its share of that prompt's pairwise comparisons won in `prompts` (ties half).
    grades: str = ""
    prompts: str = "data/sample/train.csv.xz"  # a pairs CSV: prompt texts (and, without grades, models and labels)
    test: str | None = None  # prompts to route (any CSV with a prompt column); none: evaluate only


@dataclass(frozen=True)
class QualityConfig:
    embed: bool = False  # add a MiniLM embedding of the prompt (384 columns; needs a larger alpha, ~1000)
    alpha: float = 100.0  # ridge strength per model


@dataclass(frozen=True)
class RouterConfig:
    costs_file: str = "configs/routing/costs.toml"  # a TOML table model = cost per request, in any one unit
    costs: dict[str, float] = field(default_factory=dict)  # entries here replace those of costs_file
    models: tuple[str, ...] = ()  # candidate models; empty: every model in the data
    budget: float | None = None  # mean cost per prompt; unset: budget_share_of_best × the best single model's cost
    budget_share_of_best: float = 0.5
    lam: float | None = None  # set to route by quality − lam·cost instead of a budget
    curve_points: int = 40


@dataclass(frozen=True)
class RoutingConfig:
    name: str = "sample"
    runs_dir: str = "runs"
    seed: int = 42
    folds: int = 5
    data: RoutingData = field(default_factory=RoutingData)
    quality: QualityConfig = field(default_factory=QualityConfig)
    router: RouterConfig = field(default_factory=RouterConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / "routing" / self.name
