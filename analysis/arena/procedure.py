"""The De-Arena procedure: seed models ranked round-robin, the others inserted one at a time by binary search
(coarse), then compared with the models in a window around their place and moved until the Bradley-Terry
order stops changing (fine); final Bradley-Terry ratings with bootstrap intervals over every verdict used.

A comparison of two models asks each eligible judge for a verdict on a prefix of the pair's sample: the items
both models share (prompts both answered, or the pair's recorded votes) in an order drawn from a hash of the two
names and the seed, so it does not depend on the order of the calls, and more items of a pair are always the
next ones of the same sample. A comparison's score is the judges' weighted mean of P(first wins) + P(tie)/2.

The crowd follows De-Arena: a judge that speaks for a model votes only once that model is ranked and never on
a pair holding its own model; its weight is its model's Bradley-Terry rating, min-max scaled over the ranked
models, times 5 (a judge for no model weighs 1). Each judge's raw verdicts are kept, and the weights are
recomputed from the ratings at every refit. With `per_judge_search` each judge runs its own binary search and
the newcomer's place is the weighted mean of the judges' places.

The binary search places a newcomer above a model when its score is above 1/2 and below otherwise (a score of
exactly 1/2 places it below, as De-Arena does).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from analysis.arena.judges import Judge
from analysis.arena.log import JudgmentLog
from competition.errors import InputError
from models.bradley_terry import BradleyTerry

JUDGE_WEIGHT_SPAN = 5.0  # De-Arena: a judge's weight is its model's min-max scaled rating times 5


class ComparisonBook(Protocol):
    models: tuple[str, ...]

    def items(self, x: str, y: str) -> list[str]:
        """What a comparison of x and y can be judged on, in a fixed order."""
        ...


@dataclass(frozen=True)
class ArenaSettings:
    prompts_per_comparison: int = 20
    coarse_prompts: int = 10  # items per comparison in the binary search (the first ones of the pair's sample)
    window: int = 1  # models on each side of a newcomer's place compared pairwise with it and each other
    max_moves: int = 20  # re-sorts of one inserted model in the fine stage, at most
    bootstrap_rounds: int = 200
    seed: int = 0
    per_judge_search: bool = False


@dataclass
class Arena:
    book: ComparisonBook
    judges: dict[str, Judge]
    settings: ArenaSettings = field(default_factory=ArenaSettings)
    log: JudgmentLog = field(default_factory=lambda: JudgmentLog(None))
    judge_models: dict[str, str] = field(default_factory=dict)  # judge → the model it speaks for
    ratings: dict[str, float] = field(default_factory=dict)  # of the ranked models, from the last refit
    ranked: list[str] = field(default_factory=list)  # best first
    judged: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (first, second, judge) → items used
    won: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (first, second, judge) → first's summed score
    newcomer: str | None = None  # the model being inserted
    _samples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def sample(self, x: str, y: str) -> list[str]:
        first, second = sorted((x, y))
        if (first, second) not in self._samples:
            digest = hashlib.sha256(f"{self.settings.seed}|{first}|{second}".encode()).digest()
            items = self.book.items(first, second)
            order = np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(len(items))
            self._samples[(first, second)] = [items[i] for i in order]
        return self._samples[(first, second)]

    def comparable(self, x: str, y: str) -> bool:
        return len(self.sample(x, y)) > 0

    def judgments(self) -> int:
        """Verdicts this ranking has used."""
        return sum(self.judged.values())

    # --- the crowd -------------------------------------------------------------------------------------------
    def eligible(self, x: str, y: str, exclude: tuple[str, ...] = ()) -> list[str]:
        """Judges that may vote on x vs y: a judge for a model only once that model is ranked (a newcomer's judge
        after its insertion), never on a pair holding its model, nor on the window its model is part of."""
        allowed = set(self.ranked) - {x, y, self.newcomer, *exclude}
        return [j for j in self.judges if j not in self.judge_models or self.judge_models[j] in allowed]

    def weights(self, names: list[str]) -> np.ndarray:
        scores = [self.ratings[m] for m in self.ranked if m in self.ratings]
        low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
        out = []
        for name in names:
            model = self.judge_models.get(name)
            if model is None or high <= low or model not in self.ratings:
                out.append(1.0)
            else:
                out.append(JUDGE_WEIGHT_SPAN * (self.ratings[model] - low) / (high - low))
        return np.asarray(out)

    def ask(self, x: str, y: str, count: int, names: list[str]) -> None:
        """Make sure each judge in `names` has judged the first `count` items of the pair (new verdicts are logged)."""
        first, second = sorted((x, y))
        items = self.sample(first, second)[:count]
        for name in names:
            done = self.judged.get((first, second, name), 0)
            if done >= len(items):
                continue
            keys = [(name, item, first, second) for item in items[done:]]
            missing = [k for k in keys if k not in self.log]
            if missing:
                self.log.add(missing, self.judges[name].judge([k[1:] for k in missing]))
            gained = sum(self._won(name, item, first, second) for item in items[done:])
            self.won[(first, second, name)] = self.won.get((first, second, name), 0.0) + gained
            self.judged[(first, second, name)] = len(items)

    def score(self, x: str, y: str, count: int, names: list[str]) -> float:
        """x's weighted score against y over the first `count` items, from verdicts already asked."""
        first, second = sorted((x, y))
        items = self.sample(first, second)[:count]
        per_judge = [np.mean([self._won(name, item, first, second) for item in items]) for name in names]
        weights = self.weights(names)
        weights = weights if weights.sum() > 0 else np.ones(len(names))
        score = float(np.average(per_judge, weights=weights))
        return score if x == first else 1.0 - score

    def _won(self, name: str, item: str, first: str, second: str) -> float:
        p = self.log[(name, item, first, second)]
        return p[0] + p[2] / 2  # a tie is half a win

    def compare(self, x: str, y: str, count: int | None = None, names: list[str] | None = None) -> float:
        """x's score against y in [0, 1] over `count` items (prompts_per_comparison by default)."""
        count = self.settings.prompts_per_comparison if count is None else count
        names = self.eligible(x, y) if names is None else names
        if not names:
            raise InputError(f"no judge may compare {x!r} and {y!r}: every judge speaks for one of them or an unranked model")
        self.ask(x, y, count, names)
        return self.score(x, y, count, names)

    # --- the procedure ---------------------------------------------------------------------------------------
    def round_robin(self, models: list[str]) -> list[str]:
        self.ranked = list(models)
        for i, x in enumerate(models):
            for y in models[i + 1 :]:
                if self.comparable(x, y):
                    self.compare(x, y)
        return self.resort()

    def search(self, ranked: list[str], new: str, names: list[str] | None) -> int:
        """Binary search of `new`'s place in `ranked` (best first) on the judges `names`; a pair with nothing to
        judge is passed over for the nearest comparable model in the range. `names=None`: the eligible crowd."""
        low, high = 0, len(ranked)
        while low < high:
            mid = (low + high) // 2
            near = sorted(range(low, high), key=lambda i: (abs(i - mid), i))
            probe = next((i for i in near if self.comparable(new, ranked[i])), None)
            if probe is None:
                return mid
            if self.compare(new, ranked[probe], self.settings.coarse_prompts, names) > 0.5:
                high = probe
            else:
                low = probe + 1
        return low

    def place(self, new: str) -> int:
        """Where the binary search puts `new` in the ranking: the crowd's search, or the judges' weighted mean place."""
        if not self.settings.per_judge_search:
            return self.search(self.ranked, new, None)
        names = self.eligible(new, new)
        if not names:
            raise InputError(f"no judge may place {new!r}: every judge speaks for an unranked model")
        places = []
        for name in names:
            own = self.judge_models.get(name)
            others = [m for m in self.ranked if m != own]
            at = self.search(others, new, [name])
            places.append(self.ranked.index(others[at - 1]) + 1 if at > 0 else 0)
        weights = self.weights(names)
        weights = weights if weights.sum() > 0 else np.ones(len(names))
        return int(np.floor(np.average(places, weights=weights) + 0.5))

    def insert(self, new: str) -> list[str]:
        """Binary search, then every pair of the window around the new place (judged by models outside it), then
        re-sorts by Bradley-Terry, re-comparing `new` with its neighbours, until `new` stays put."""
        self.newcomer = new
        self.ranked.insert(self.place(new), new)
        at, w = self.ranked.index(new), self.settings.window
        self.compare_all(self.ranked[max(0, at - w) : at + w + 1])
        before = at
        self.resort()
        for _ in range(self.settings.max_moves):
            at = self.ranked.index(new)
            if at == before:
                break
            before = at
            self.compare_all(self.ranked[max(0, at - 1) : at + 2])
            self.resort()
        self.newcomer = None
        return self.ranked

    def compare_all(self, window: list[str]) -> None:
        for i, x in enumerate(window):
            for y in window[i + 1 :]:
                if self.comparable(x, y):
                    # De-Arena's judges of a window are the models outside it; too few ranked models: any eligible
                    self.compare(x, y, names=self.eligible(x, y, tuple(window)) or self.eligible(x, y))

    def rank(self, seeds: list[str], others: list[str]) -> list[str]:
        self.round_robin(seeds)
        for model in others:
            self.insert(model)
        return self.ranked

    # --- ratings ---------------------------------------------------------------------------------------------
    def verdict_rows(self, models: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
        """(a, b, outcome, weight, (item, first, second) keys) of every verdict used among `models`, weighted by the
        current judge weights."""
        index = {m: i for i, m in enumerate(models)}
        names = list(self.judges)
        weight_of = dict(zip(names, self.weights(names), strict=True))
        a, b, outcome, weight, keys = [], [], [], [], []
        for (first, second, name), count in self.judged.items():
            if first not in index or second not in index or count == 0:
                continue
            for item in self.sample(first, second)[:count]:
                a.append(index[first])
                b.append(index[second])
                outcome.append(self._won(name, item, first, second))
                weight.append(weight_of[name])
                keys.append((item, first, second))
        if not a:
            raise InputError("no judgments among these models yet")
        weight = np.array(weight, dtype=np.float64)
        return np.array(a), np.array(b), np.array(outcome), weight if weight.sum() > 0 else np.ones(len(a)), keys

    def fitted(self, models: list[str], covariates=None, per_verdict: bool = False) -> BradleyTerry:
        """Bradley-Terry ("half" ties: outcome = P(first) + P(tie)/2) on every verdict used among `models`, each
        weighted by its judge's current weight. By default one row per pair and judge (its mean outcome, weight
        times count: the same likelihood); `per_verdict` keeps one row per verdict (for the bootstrap), and
        `covariates(keys)` gives the style differences of each verdict (style control)."""
        model = BradleyTerry(len(models), tie_model="half", l2=1e-6)
        if per_verdict or covariates is not None:
            a, b, outcome, weight, keys = self.verdict_rows(models)
            if covariates is not None:
                # both orders, half weight each: the fit centres covariates, and verdicts all oriented by name would
                # turn that centring into a spurious first-model advantage
                style = covariates(keys)
                both = (np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([outcome, 1 - outcome]))
                return model.fit(
                    *both,
                    np.concatenate([weight, weight]) / 2,
                    covariates=np.concatenate([style, -style]),
                    counts=np.full(2 * len(a), 0.5),  # the two orientations of a verdict are one battle between them
                )
            # one row per verdict: the bootstrap resamples verdicts, whatever their judges' weights
            return model.fit(a, b, outcome, weight, counts=np.ones(len(a)))
        index = {m: i for i, m in enumerate(models)}
        names = list(self.judges)
        weight_of = dict(zip(names, self.weights(names), strict=True))
        rows = [
            (index[f], index[s], self.won[(f, s, j)] / n, n * weight_of[j])
            for (f, s, j), n in self.judged.items()
            if n and f in index and s in index
        ]
        if not rows:
            raise InputError("no judgments among these models yet")
        a, b, outcome, weight = (np.array(column) for column in zip(*rows, strict=True))
        return model.fit(a.astype(np.int64), b.astype(np.int64), outcome, weight if weight.sum() > 0 else np.ones(len(a)))

    def resort(self) -> list[str]:
        """The ranked models in Bradley-Terry order on the verdicts so far (best first); ratings are kept."""
        if len(self.ranked) < 2:
            return self.ranked
        model = self.fitted(self.ranked)
        self.ratings = dict(zip(self.ranked, model.ratings_, strict=True))
        self.ranked = [self.ranked[i] for i in np.argsort(-model.ratings_, kind="stable")]
        return self.ranked

    def table(self, models: list[str], covariates=None):
        import pandas as pd

        model = self.fitted(models, covariates, per_verdict=True)
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
