"""Config of `arena`: one frozen dataclass, overridable from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from competition.config import finite, require
from competition.rundir import RunKind
from competition.settings import DataConfig, RunLocation

SOURCES = ("run", "model", "verdicts", "grades", "llm", "votes")


@dataclass(frozen=True)
class ArenaJudgeConfig:
    run: str = ""  # a cv / train-transformer run: its out-of-fold predictions are the verdicts
    model: str = ""  # a fitted model (run or model/ folder, any family) scoring the pairs it is asked about
    verdicts: str = ""  # CSV of recorded verdicts: prompt, model_a, model_b, winner_model_a, winner_model_b, winner_tie
    grades: str = ""  # CSV of prompt (or question_id), model, grade: the graded oracle
    noise: float = 0.0  # normal noise sd added to each grade by the oracle
    llm: str = ""  # a local causal LM directory, prompted as a pairwise judge (both orders)
    votes: str = ""  # battles CSV (model_a, model_b, winner): recorded votes replayed; the models are the file's
    both_bad: str = "tie"  # a recorded "both bad" vote: a tie, or dropped
    crowd: tuple[str, ...] = ()  # "MODEL=PATH": a judge speaking for MODEL (a verdicts CSV, or a causal LM folder)

    def sources(self) -> list[str]:
        return [name for name in SOURCES if getattr(self, name)]

    def __post_init__(self) -> None:
        require(len(self.sources()) <= 1, "judge", f"takes one source: {', '.join(SOURCES)} (and a crowd beside it)")
        require(finite(self.noise) and self.noise >= 0, "noise", "must be >= 0")
        require(self.both_bad in ("tie", "drop"), "both_bad", "must be tie or drop")
        for entry in self.crowd:
            model, _, path = entry.partition("=")
            require(bool(model.strip()) and bool(path.strip()), "crowd", f"entries are MODEL=PATH, got {entry!r}")
        models = [entry.partition("=")[0] for entry in self.crowd]
        require(len(set(models)) == len(models), "crowd", "names a model twice")


@dataclass(frozen=True)
class ArenaRankConfig:
    seed_models: tuple[str, ...] = ()  # ranked round-robin first; empty: `seed_count` drawn by `seed`
    seed_count: int = 3
    prompts_per_comparison: int = 20  # items (prompts, or recorded votes) judged per comparison
    coarse_prompts: int = 10
    window: int = 1
    per_judge_search: bool = False  # each judge searches on its own; the newcomer goes to their weighted mean place
    budget: int = 0  # > 0: after the insertion pass, adaptive comparisons until this many verdicts are used
    adaptive_step: int = 4  # fresh items per adaptive re-comparison of a pair
    style_features: tuple[str, ...] = ()  # style control in the final fit (feature-registry columns, as in leaderboard)
    bootstrap_rounds: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.seed_count >= 2, "seed_count", "must be at least 2")
        require(self.prompts_per_comparison >= 1, "prompts_per_comparison", "must be at least 1")
        require(
            1 <= self.coarse_prompts <= self.prompts_per_comparison, "coarse_prompts", "must be in [1, prompts_per_comparison]"
        )
        require(self.window >= 0, "window", "must be >= 0")
        require(self.bootstrap_rounds >= 10, "bootstrap_rounds", "must be >= 10")
        require(self.budget >= 0 and self.adaptive_step >= 1, "budget", "must be >= 0 (and adaptive_step >= 1)")
        require(self.seed >= 0, "seed", "must be >= 0")
        require(all(self.style_features), "style_features", "must not hold an empty name")


@dataclass(frozen=True)
class ArenaConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.ARENA
    name: str = "arena"
    data: DataConfig = field(default_factory=DataConfig)
    judge: ArenaJudgeConfig = field(default_factory=ArenaJudgeConfig)
    arena: ArenaRankConfig = field(default_factory=ArenaRankConfig)

    def inputs(self) -> list[str | None]:
        judge = self.judge
        crowd = [entry.partition("=")[2] for entry in judge.crowd]
        return [judge.votes or self.data.train, judge.run, judge.model, judge.verdicts, judge.grades, judge.llm, *crowd]
