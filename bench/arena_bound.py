"""How far any allocation of votes could get: expected discordant pairs of the all-votes ranking for round-robin
and for a greedy allocation that knows the true ratings (the bound an adaptive procedure works against).

For a design giving m_xy votes to each pair, the ratings' Fisher information (Bradley-Terry, "half" ties) is the
Laplacian Σ m_xy p_xy (1 - p_xy) u uᵀ (u = e_x - e_y, p at the true ratings) plus the adaptive procedure's weak
N(0, 2²) prior; Var(r_x - r_y) follows, and the expected number of pairs a fit would order against the truth is
Σ Φ(-|Δ_xy| / sd_xy), a proxy of 1 - Spearman. The oracle adds `step` votes at a time (never more than a pair's
recorded battles) to the pair that lowers that sum most per vote, updating the covariance by rank one; it knows
what no procedure knows (the true ratings), so no procedure is expected to beat it.

    python bench/arena.py bound [--battles ...] [--step 5]
"""

from __future__ import annotations

import time

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from analysis.arena.adaptive import PRIOR_PRECISION
from models.bradley_terry import BradleyTerry, aggregate

FRACTIONS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Design:
    """Every pair of `n` models with its recorded battles, the true rating gap and the information per vote."""

    def __init__(self, a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n: int):
        truth = BradleyTerry(n, "half", l2=1e-6).fit(*aggregate(a, b, outcome)).ratings_
        first, second = np.triu_indices(n, 1)
        recorded = np.zeros((n, n))
        np.add.at(recorded, (np.minimum(a, b), np.maximum(a, b)), 1)
        self.available = recorded[first, second]
        self.gap = truth[first] - truth[second]
        self.per_vote = expit(self.gap) * (1 - expit(self.gap))
        self.u = np.zeros((len(first), n))
        self.u[np.arange(len(first)), first], self.u[np.arange(len(first)), second] = 1.0, -1.0

    def covariance(self, votes: np.ndarray) -> np.ndarray:
        information = (self.u * (votes * self.per_vote)[:, None]).T @ self.u
        return np.linalg.inv(information + PRIOR_PRECISION * np.eye(self.u.shape[1]))

    def difference_variance(self, cov: np.ndarray) -> np.ndarray:
        return np.einsum("pi,ij,pj->p", self.u, cov, self.u)

    def expected_discordant(self, votes: np.ndarray) -> float:
        sd = np.sqrt(self.difference_variance(self.covariance(votes)))
        return float(norm.cdf(-np.abs(self.gap) / sd).sum())


def greedy_oracle(design: Design, budget: float, step: int, checkpoints: list[float]) -> list[dict]:
    """Expected discordant pairs at each checkpoint (votes) of the greedy allocation that knows the truth."""
    votes = np.zeros_like(design.available)
    cov = design.covariance(votes)
    points, pending = [], sorted(checkpoints)
    while pending:
        left = design.available - votes
        candidates = np.flatnonzero(left > 0)
        if not len(candidates):
            break
        added = np.minimum(step, left[candidates])
        variance = design.difference_variance(cov)
        spread = cov @ design.u[candidates].T  # Σu per candidate
        shrink = added * design.per_vote[candidates] / (1 + added * design.per_vote[candidates] * variance[candidates])
        after = np.maximum(variance[:, None] - shrink[None, :] * (design.u @ spread) ** 2, 1e-12)
        now = norm.cdf(-np.abs(design.gap) / np.sqrt(variance))
        gain = (now[:, None] - norm.cdf(-np.abs(design.gap)[:, None] / np.sqrt(after))).sum(axis=0) / added
        best = int(np.argmax(gain))
        votes[candidates[best]] += added[best]
        cov = cov - shrink[best] * np.outer(spread[:, best], spread[:, best])
        while pending and votes.sum() >= pending[0]:
            points.append({"votes": float(votes.sum()), "expected_discordant": design.expected_discordant(votes)})
            pending.pop(0)
    return points


def bound_study(args) -> dict:
    from data.battles import read_battles

    battles = read_battles(args.battles)
    models = sorted(set(battles["model_a"]) | set(battles["model_b"]))
    index = {m: i for i, m in enumerate(models)}
    a, b = battles["model_a"].map(index).to_numpy(), battles["model_b"].map(index).to_numpy()
    design = Design(a, b, battles["outcome"].to_numpy(), len(models))
    out: dict = {"models": len(models), "pairs": len(design.gap), "round_robin": []}
    for k in (5, 10, 20):
        votes = np.minimum(k, design.available)
        out["round_robin"].append(
            {
                "k": k,
                "votes": float(votes.sum()),
                "expected_discordant": design.expected_discordant(votes),
                "mean_information_per_vote": float((votes * design.per_vote).sum() / votes.sum()),
            }
        )
    reference = next(r["votes"] for r in out["round_robin"] if r["k"] == 10)
    started = time.perf_counter()
    points = greedy_oracle(design, reference, args.step, [f * reference for f in FRACTIONS])
    out["oracle_greedy"] = [{"share_of_round_robin_k10": f, **p} for f, p in zip(FRACTIONS, points, strict=False)]
    out["oracle_seconds"] = time.perf_counter() - started
    out["information_per_vote_at_most"] = 0.25
    return out
