"""The arithmetic of an inference plan beyond its batches: padding, shards, token-balanced workers.

An item is one packed input (a row, or its A/B-swapped twin) with a token length. A batch costs its
padded tokens (rows × longest row); batches are cut by a budget of those tokens in
`models/transformer/batches.py`, the rule the estimator's own prediction follows too. Shards group
consecutive batches; they are the unit written to disk and skipped on a rerun.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def padded_tokens(lengths: np.ndarray, batch: np.ndarray) -> int:
    return int(len(batch) * lengths[batch].max()) if len(batch) else 0


def padding_efficiency(lengths: np.ndarray, batches: Sequence[np.ndarray]) -> float:
    """Real tokens / processed (padded) tokens over all batches: 1.0 means no padding at all."""
    real = sum(int(lengths[b].sum()) for b in batches)
    processed = sum(padded_tokens(lengths, b) for b in batches)
    return real / processed if processed else 1.0


def group_shards(batches: Sequence[np.ndarray], shard_rows: int) -> list[list[np.ndarray]]:
    """Consecutive batches gathered until a shard holds at least `shard_rows` items."""
    shards: list[list[np.ndarray]] = []
    current: list[np.ndarray] = []
    rows = 0
    for batch in batches:
        current.append(batch)
        rows += len(batch)
        if rows >= shard_rows:
            shards.append(current)
            current, rows = [], 0
    if current:
        shards.append(current)
    return shards


def balance_by_tokens(costs: Sequence[int], n_workers: int) -> list[list[int]]:
    """Shard indices per worker, largest cost first to the least loaded worker (LPT scheduling).

    Each worker's list comes back in increasing shard index, i.e. longest items first.
    """
    if n_workers < 1:
        raise ValueError("need at least one worker")
    loads = [0] * n_workers
    assigned: list[list[int]] = [[] for _ in range(n_workers)]
    for shard in sorted(range(len(costs)), key=lambda s: (-costs[s], s)):
        worker = min(range(n_workers), key=lambda w: (loads[w], w))
        loads[worker] += int(costs[shard])
        assigned[worker].append(shard)
    return [sorted(shards) for shards in assigned]
