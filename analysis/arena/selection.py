"""Prompt selection for a dimension (De-Arena): from a pool of prompts of one category, the k prompts on which
the seed models' order agrees best with their order over the whole pool; a small, consistent probe set for
ranking further models on that dimension."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.stats import spearmanr

from analysis.arena.answers import AnswerBook


def seed_scores(book: AnswerBook, judge, seeds: list[str], prompts: list[str]) -> np.ndarray:
    """(prompts, seeds): each seed's mean score (P(win) + P(tie)/2) against the other seeds on each prompt."""
    scores = np.zeros((len(prompts), len(seeds)))
    pairs = list(combinations(range(len(seeds)), 2))
    keys = [(p, seeds[i], seeds[j]) for p in prompts for i, j in pairs]
    verdicts = judge.judge(keys).reshape(len(prompts), len(pairs), 3)
    for k, (i, j) in enumerate(pairs):
        won = verdicts[:, k, 0] + verdicts[:, k, 2] / 2
        scores[:, i] += won
        scores[:, j] += 1 - won
    return scores / (len(seeds) - 1)


def select_prompts(book: AnswerBook, judge, seeds: list[str], pool: list[str], k: int) -> list[str]:
    """The `k` prompts of `pool` whose seed order correlates best with the pool's overall seed order."""
    usable = [p for p in pool if all((p, s) in book.answers for s in seeds)]
    scores = seed_scores(book, judge, seeds, usable)
    overall = scores.mean(axis=0)
    consistency = np.array(
        [spearmanr(row, overall).statistic if np.ptp(row) > 0 else -1.0 for row in scores]  # a flat prompt tells nothing
    )
    best = np.argsort(-np.nan_to_num(consistency, nan=-1.0), kind="stable")[:k]
    return [usable[i] for i in best]
