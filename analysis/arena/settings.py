"""Config of `arena`: one frozen dataclass, overridable from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from competition.config import finite, require
from competition.rundir import RunKind
from competition.settings import DataConfig, RunLocation


@dataclass(frozen=True)
class ArenaJudgeConfig:
    run: str = ""  # a cv / train-transformer run: its out-of-fold predictions are the verdicts
    model: str = ""  # a fitted model (run or model/ folder, any family) scoring the pairs it is asked about
    verdicts: str = ""  # CSV of recorded verdicts: prompt, model_a, model_b, winner_model_a, winner_model_b, winner_tie
    grades: str = ""  # CSV of prompt (or question_id), model, grade: the graded oracle
    noise: float = 0.0  # normal noise sd added to each grade by the oracle
    llm: str = ""  # a local causal LM directory, prompted as a pairwise judge (both orders)

    def sources(self) -> list[str]:
        return [name for name in ("run", "model", "verdicts", "grades", "llm") if getattr(self, name)]

    def __post_init__(self) -> None:
        require(len(self.sources()) <= 1, "judge", "takes one source: run, model, verdicts, grades or llm")
        require(finite(self.noise) and self.noise >= 0, "noise", "must be >= 0")


@dataclass(frozen=True)
class ArenaRankConfig:
    seed_models: tuple[str, ...] = ()  # ranked round-robin first; empty: `seed_count` drawn by `seed`
    seed_count: int = 3
    prompts_per_comparison: int = 20
    coarse_prompts: int = 10
    window: int = 1
    bootstrap_rounds: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.seed_count >= 2, "seed_count", "must be at least 2")
        require(
            1 <= self.coarse_prompts <= self.prompts_per_comparison, "coarse_prompts", "must be in [1, prompts_per_comparison]"
        )
        require(self.window >= 0 and self.bootstrap_rounds >= 10, "window", "must be >= 0 (and bootstrap_rounds >= 10)")


@dataclass(frozen=True)
class ArenaConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.ARENA
    name: str = "arena"
    data: DataConfig = field(default_factory=DataConfig)
    judge: ArenaJudgeConfig = field(default_factory=ArenaJudgeConfig)
    arena: ArenaRankConfig = field(default_factory=ArenaRankConfig)

    def inputs(self) -> list[str | None]:
        judge = self.judge
        return [self.data.train, judge.run, judge.model, judge.verdicts, judge.grades, judge.llm]
