"""Config of `route`. The cost table is illustrative (the data has no prices): see configs/routing/bench.toml.

The run goes to `--out`, else runs_dir/routing/<name>.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from competition.config import finite, require
from competition.rundir import RunKind
from competition.settings import CVConfig, RunLocation
from data.tables import check_names


@dataclass(frozen=True)
class RoutingData:
    # question_id, model, grade: every model's grade on every prompt. Empty: the quality of a model on a
    # prompt is its share of that prompt's pairwise comparisons won in `prompts` (ties half).
    grades: str = ""
    prompts: str = "data/sample/train.csv.xz"  # a pairs CSV: prompt texts (and, without grades, models and labels)
    test: str = ""  # prompts to route (any CSV with a prompt column); empty: evaluate only

    def __post_init__(self) -> None:
        require(bool(self.prompts), "prompts", "must name a pairs file (see configs/routing/bench.toml)")


@dataclass(frozen=True)
class QualityConfig:
    embed: bool = False  # add a MiniLM embedding of the prompt (384 columns; needs a larger alpha, ~1000)
    alpha: float = 100.0  # ridge strength per model

    def __post_init__(self) -> None:
        require(finite(self.alpha) and self.alpha > 0, "alpha", "must be > 0 and finite")


@dataclass(frozen=True)
class RouterConfig:
    costs_file: str = "configs/routing/costs.toml"  # a TOML table model = cost per request, in any one unit
    costs: dict[str, float] = field(default_factory=dict)  # entries here replace those of costs_file
    models: tuple[str, ...] = ()  # candidate models; empty: every model in the data
    budget: float | None = None  # mean cost per prompt; unset: budget_share_of_best × the best single model's cost
    budget_share_of_best: float = 0.5
    lam: float | None = None  # set to route by quality − lam·cost instead of a budget
    curve_points: int = 40
    # P2L's LP router (with a `p2l` run): the opponent's sampling weight per model, as P2L weights the arena's
    # opponents; empty: every candidate equally often. Weights are relative (need not sum to 1).
    opponent: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [k for k, v in self.costs.items() if not k.strip() or not (math.isfinite(v) and v >= 0)]
        require(not bad, "costs", f"entry {bad[:1]} must name a model and be a non-negative finite number")
        require(len(self.models) != 1, "models", "must name at least two candidates (or none for every model)")
        check_names(self.models, "models")
        require(self.budget is None or (finite(self.budget) and self.budget > 0), "budget", "must be > 0 and finite")
        require(
            finite(self.budget_share_of_best) and self.budget_share_of_best > 0, "budget_share_of_best", "must be > 0 and finite"
        )
        require(self.lam is None or (finite(self.lam) and self.lam >= 0), "lam", "must be >= 0 and finite")
        require(2 <= self.curve_points <= 10_000, "curve_points", "must be between 2 and 10000")
        bad_weight = [k for k, v in self.opponent.items() if not k.strip() or not (math.isfinite(v) and v >= 0)]
        require(not bad_weight, "opponent", f"entry {bad_weight[:1]} must name a model and be a non-negative finite weight")
        require(not self.opponent or sum(self.opponent.values()) > 0, "opponent", "weights must not all be zero")


@dataclass(frozen=True)
class RoutingConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.ROUTING
    name: str = "routing/sample"
    cv: CVConfig = field(default_factory=CVConfig)
    data: RoutingData = field(default_factory=RoutingData)
    quality: QualityConfig = field(default_factory=QualityConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    p2l: str = ""  # a train-p2l run: P2L's router (held-out win rates under the same budget) beside the ridge router

    def inputs(self) -> list[str | None]:
        return [self.data.grades, self.data.prompts, self.data.test, self.router.costs_file, self.p2l]

    def side_outputs(self) -> list[str | None]:
        return [self.cv.fold_dir]
