"""The De-Arena procedure: seed models ranked round-robin, the others inserted one at a time by binary search
(coarse) and then moved past their neighbours in a sliding window until their place is stable (fine); final
Bradley-Terry ratings with bootstrap intervals over every judgment made.

A comparison of two models is a judgment on each of a sample of the prompts both answered; its score is the
mean of P(first wins) + P(tie)/2. The prompt sample of a pair is drawn from a hash of the two names and the
seed, so it does not depend on the order of the calls. With a crowd of judges, each judgment is the average
of the judges' verdicts weighted by the current rating of each judge's own model (a judge is never one of the
two models compared). Every judgment is appended to a log as it is made; a rerun reads the log and asks only
for what is missing, so a killed run resumes and a finished one repeats exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.arena.answers import AnswerBook
from analysis.arena.judges import Judge
from competition.errors import InputError
from models.bradley_terry import BradleyTerry


@dataclass(frozen=True)
class ArenaSettings:
    prompts_per_comparison: int = 20
    coarse_prompts: int = 10  # prompts per comparison in the binary search (the first ones of the pair's sample)
    window: int = 1  # neighbours on each side compared in the fine stage
    max_moves: int = 20  # moves of one inserted model in the fine stage, at most
    bootstrap_rounds: int = 200
    seed: int = 0


class JudgmentLog:
    """Judgments as JSON lines {prompt, first, second, p}; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path | None):
        self.path, self.entries = path, {}
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                self.entries[(entry["prompt"], entry["first"], entry["second"])] = np.asarray(entry["p"], dtype=np.float64)

    def add(self, keys: list[tuple[str, str, str]], probs: np.ndarray) -> None:
        lines = []
        for key, p in zip(keys, probs, strict=True):
            self.entries[key] = np.asarray(p, dtype=np.float64)
            lines.append(json.dumps({"prompt": key[0], "first": key[1], "second": key[2], "p": [float(v) for v in p]}))
        if self.path is not None and lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()


@dataclass
class Arena:
    book: AnswerBook
    judges: dict[str, Judge]
    settings: ArenaSettings = field(default_factory=ArenaSettings)
    log: JudgmentLog = field(default_factory=lambda: JudgmentLog(None))
    judge_models: dict[str, str] = field(default_factory=dict)  # judge name → the model it is (crowd weighting)
    ratings: dict[str, float] = field(default_factory=dict)
    asked: dict[tuple[str, str, str], None] = field(default_factory=dict)  # judgments this ranking used, in order

    def sample(self, x: str, y: str) -> list[str]:
        first, second = sorted((x, y))
        shared = self.book.shared_prompts(first, second)
        k = self.settings.prompts_per_comparison
        if len(shared) < k:
            raise InputError(f"{x!r} and {y!r} share {len(shared)} prompts, fewer than prompts_per_comparison={k}")
        digest = hashlib.sha256(f"{self.settings.seed}|{first}|{second}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return list(rng.choice(shared, size=k, replace=False))  # in drawn order: a prefix is a random sample too

    def _crowd(self, keys: list[tuple[str, str, str]]) -> np.ndarray:
        x, y = keys[0][1], keys[0][2]
        eligible = [name for name in self.judges if self.judge_models.get(name) not in (x, y)]
        if not eligible:
            raise InputError(f"no judge may compare {x!r} and {y!r}: every judge is one of the two")
        scores = np.array([self.ratings.get(self.judge_models.get(name, ""), 0.0) for name in eligible])
        weights = np.exp(scores - scores.max())
        verdicts = [self.judges[name].judge(keys) for name in eligible]
        return np.tensordot(weights / weights.sum(), np.stack(verdicts), axes=1)

    def compare(self, x: str, y: str, prompts: int | None = None) -> float:
        """x's score against y in [0, 1] over the first `prompts` of the pair's sample (all by default); judgments
        come from the log when there."""
        first, second = sorted((x, y))
        keys = [(prompt, first, second) for prompt in self.sample(first, second)[:prompts]]
        missing = [k for k in keys if k not in self.log.entries]
        if missing:
            self.log.add(missing, self._crowd(missing))
        self.asked.update(dict.fromkeys(keys))
        probs = np.stack([self.log.entries[k] for k in keys])
        score = float(np.mean(probs[:, 0] + probs[:, 2] / 2))
        return score if x == first else 1.0 - score

    def round_robin(self, models: list[str]) -> list[str]:
        for i, x in enumerate(models):
            for y in models[i + 1 :]:
                self.compare(x, y)
        return self.order(models)

    def insert(self, ranked: list[str], new: str) -> list[str]:
        """Binary search for `new`'s place in `ranked` (best first), then neighbour moves until stable."""
        low, high = 0, len(ranked)
        while low < high:
            mid = (low + high) // 2
            if self.compare(new, ranked[mid], self.settings.coarse_prompts) > 0.5:
                high = mid
            else:
                low = mid + 1
        ranked = ranked[:low] + [new] + ranked[low:]
        for _ in range(self.settings.max_moves):
            at = ranked.index(new)
            if at > 0 and self.compare(new, ranked[at - 1]) > 0.5:
                ranked[at - 1], ranked[at] = ranked[at], ranked[at - 1]
            elif at < len(ranked) - 1 and self.compare(new, ranked[at + 1]) < 0.5:
                ranked[at + 1], ranked[at] = ranked[at], ranked[at + 1]
            else:
                break
        at = ranked.index(new)
        for other in ranked[max(0, at - self.settings.window) : at + self.settings.window + 1]:
            if other != new:
                self.compare(new, other)  # the window's judgments feed the final ratings
        self.order(ranked)
        return ranked

    def rank(self, seeds: list[str], others: list[str]) -> list[str]:
        ranked = self.round_robin(seeds)
        for model in others:
            ranked = self.insert(ranked, model)
        return self.order(ranked)

    def fitted(self, models: list[str]) -> BradleyTerry:
        index = {m: i for i, m in enumerate(models)}
        keys = [k for k in self.asked if k[1] in index and k[2] in index]
        if not keys:
            raise InputError("no judgments among these models yet")
        probs = np.stack([self.log.entries[k] for k in keys])
        a = np.array([index[k[1]] for k in keys])
        b = np.array([index[k[2]] for k in keys])
        # outcome = P(first wins) + P(tie)/2: the "half" tie model takes fractional outcomes
        return BradleyTerry(len(models), tie_model="half", l2=1e-6).fit(a, b, probs[:, 0] + probs[:, 2] / 2)

    def order(self, models: list[str]) -> list[str]:
        """Models by their Bradley-Terry rating on the judgments made so far (best first); ratings are kept."""
        model = self.fitted(models)
        self.ratings.update(dict(zip(models, model.ratings_, strict=True)))
        return [models[i] for i in np.argsort(-model.ratings_, kind="stable")]

    def table(self, models: list[str]):
        import pandas as pd

        model = self.fitted(models)
        draws = model.bootstrap_ratings(self.settings.bootstrap_rounds, self.settings.seed)
        order = np.argsort(-model.ratings_, kind="stable")
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(models) + 1),
                "model": [models[i] for i in order],
                "rating": model.ratings_[order],
                "rating_low": np.percentile(draws, 2.5, axis=0)[order],
                "rating_high": np.percentile(draws, 97.5, axis=0)[order],
            }
        )
