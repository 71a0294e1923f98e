"""Recorded human votes as a judge: a comparison of two models replays the battles recorded between them.

The items of a pair are its recorded battles (by id); the arena's seeded sample of a pair is then a draw of its
votes without replacement, and asking for more votes of a pair takes the next ones of the same draw. A
battle's verdict is its recorded outcome seen from the pair's first model (a tie, or both bad, is a tie). A
pair with fewer votes than asked gives what it has; a pair never recorded cannot be compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.arena.judges import Comparison
from competition.errors import InputError

ONE_HOT = {1.0: (1.0, 0.0, 0.0), 0.0: (0.0, 1.0, 0.0), 0.5: (0.0, 0.0, 1.0)}


class RecordedVotes:
    """Both the book (what a pair can be judged on) and the judge (the recorded outcome)."""

    def __init__(self, battles: pd.DataFrame, source: str = ""):
        if battles.empty:
            raise InputError("no battles to replay", source or None)
        ids = battles["id"].astype(str).to_numpy() if "id" in battles.columns else np.arange(len(battles)).astype(str)
        a, b = battles["model_a"].astype(str).to_numpy(), battles["model_b"].astype(str).to_numpy()
        outcome = battles["outcome"].to_numpy(dtype=np.float64)
        self.verdict: dict[str, tuple[str, np.ndarray]] = {}
        by_pair: dict[tuple[str, str], list[str]] = {}
        for battle, x, y, won in zip(ids, a, b, outcome, strict=True):
            self.verdict[battle] = (x, np.asarray(ONE_HOT[float(won)]))
            by_pair.setdefault(tuple(sorted((x, y))), []).append(battle)
        self.by_pair = {pair: sorted(items) for pair, items in by_pair.items()}
        self.models = tuple(sorted(set(a) | set(b)))
        self.name = "recorded votes"

    def items(self, x: str, y: str) -> list[str]:
        return self.by_pair.get(tuple(sorted((x, y))), [])

    def judge(self, comparisons: list[Comparison]) -> np.ndarray:
        out = np.empty((len(comparisons), 3))
        for i, (battle, first, _) in enumerate(comparisons):
            recorded_a, p = self.verdict[battle]
            out[i] = p if recorded_a == first else p[[1, 0, 2]]
        return out

    def check_models(self, names, what: str) -> None:
        unknown = [m for m in names if m not in self.models]
        if unknown:
            raise InputError(f"{what} {unknown[0]!r} has no recorded votes (models there: {', '.join(self.models)})")
