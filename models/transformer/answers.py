"""The distinct (prompt, answer) sides of a pair file, and the units of pairs the reward head trains on.

The reward head scores each side of a pair on its own, and on files where a prompt has many answers most
sides are shared: arena-bench-pairs holds 17,546 pairs over 2,943 distinct (prompt, answer) sides. So:
- `side_table` packs every distinct side once per fit (the tokenizer runs once per text, not once per step)
  and gives each pair the index of its A side and its B side;
- `pair_units` cuts an epoch's pairs into units (micro-batches) grouped by prompt, each holding at most
  `budget` tokens of distinct sides: a unit encodes each side it needs once, whatever the number of its pairs;
- `side_batches` sorts a unit's sides by length and cuts them into right-padded batches by the same budget.
A file where every answer appears once (as Kaggle's mostly does) costs what per-pair encoding costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.transformer.batches import cut_batches, longest_first
from models.transformer.packing import encode_side


@dataclass(frozen=True)
class SideTable:
    sequences: list[list[int]]  # packed ids of each distinct (prompt, response) side
    side_a: np.ndarray  # per pair: index of its A side in `sequences`
    side_b: np.ndarray
    prompt: np.ndarray  # per pair: index of its prompt (units group pairs by it)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.sequences), dtype=np.int64, count=len(self.sequences))


def _key(turns) -> tuple:
    return tuple(turns) if isinstance(turns, list | tuple | np.ndarray) else (turns,)


def side_table(tokenizer, frame: pd.DataFrame, max_length: int) -> SideTable:
    """Distinct sides of `frame`'s pairs (turn lists in prompt / response_a / response_b), each packed once."""
    index: dict[tuple, int] = {}
    prompts: dict[tuple, int] = {}
    sides: list[tuple] = []
    columns = [frame["prompt"], frame["response_a"], frame["response_b"]]
    side_a, side_b, prompt_of = [], [], []
    for prompt, a, b in zip(*columns, strict=True):
        p = _key(prompt)
        prompt_of.append(prompts.setdefault(p, len(prompts)))
        for response, out in ((a, side_a), (b, side_b)):
            key = (p, _key(response))
            if key not in index:
                index[key] = len(sides)
                sides.append((prompt, response))
            out.append(index[key])
    encoded = [encode_side(tokenizer, prompt, response, max_length) for prompt, response in sides]
    # sides in the order of their ids, not of first appearance: the same pairs with A and B exchanged (or in
    # another row order) then give the same table, the same batches and bit-identical rewards
    order = sorted(range(len(encoded)), key=lambda i: encoded[i])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    as_array = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    return SideTable([encoded[i] for i in order], rank[side_a], rank[side_b], as_array(prompt_of))


def pair_units(table: SideTable, pairs: np.ndarray, budget: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of `pairs` (pair indices), shuffled by prompt then within each prompt, cut into units whose
    distinct sides hold at most `budget` tokens (a single pair whose two sides exceed it is a unit of its own).

    A prompt whose sides do not fit the room left in a unit but fit an empty one starts a new unit, so its
    sides are encoded once rather than split over two units.
    """
    lengths = table.lengths
    by_prompt: dict[int, list[int]] = {}
    for pair in np.asarray(pairs, dtype=np.int64):
        by_prompt.setdefault(int(table.prompt[pair]), []).append(int(pair))
    units: list[np.ndarray] = []
    current: list[int] = []
    held: set[int] = set()
    used = 0
    for prompt in rng.permutation(sorted(by_prompt)):
        members = np.asarray(by_prompt[int(prompt)])[rng.permutation(len(by_prompt[int(prompt)]))]
        prompt_tokens = int(lengths[np.unique(np.concatenate([table.side_a[members], table.side_b[members]]))].sum())
        if current and used + prompt_tokens > budget >= prompt_tokens:
            units.append(np.asarray(current))
            current, held, used = [], set(), 0
        for pair in members:
            new = {int(table.side_a[pair]), int(table.side_b[pair])} - held
            extra = int(sum(lengths[s] for s in new))
            if current and used + extra > budget:
                units.append(np.asarray(current))
                current, held, used = [], set(), 0
                new = {int(table.side_a[pair]), int(table.side_b[pair])}
                extra = int(sum(lengths[s] for s in new))
            current.append(int(pair))
            held |= new
            used += extra
    if current:
        units.append(np.asarray(current))
    return units


def unit_sides(table: SideTable, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct sides of the unit's pairs, position of each pair's A side in them, of its B side)."""
    sides = np.unique(np.concatenate([table.side_a[unit], table.side_b[unit]]))
    return sides, np.searchsorted(sides, table.side_a[unit]), np.searchsorted(sides, table.side_b[unit])


def side_batches(lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Positions into `lengths`, longest first, cut into batches of at most `budget` padded tokens."""
    return cut_batches(lengths, longest_first(lengths), budget)
