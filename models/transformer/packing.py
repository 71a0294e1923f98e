"""Packs one (prompt, response A, response B) conversation into a single token sequence under a budget.

Rules (property-tested in tests/test_transformer_packing.py):
- the whole sequence, special tokens included, is at most `max_length` tokens;
- the three fields share the budget by water-filling: each gets min(its need, a common cap), so a
  field needing less than a third leaves its spare to the others and no field can starve another;
- A and B are treated alike, so packing (prompt, B, A) gives exactly the A/B segments swapped;
- inside a field the latest turn is served first, then earlier ones while budget remains;
- a turn that does not fit keeps its head and tail around a visible cut marker.
Turns appear in conversation order. The A/B swap of an input is made in one place, `encode_pairs`,
which training (augmentation), the estimator (swap averaging) and batch inference all call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEADERS = ("Prompt:\n", "\n\nResponse A:\n", "\n\nResponse B:\n")
SINGLE_HEADERS = ("Prompt:\n", "\n\nResponse:\n")  # one response at a time (the reward head)
TURN_SEPARATOR = "\n\n"
CUT_MARKER = " [...] "
# Characters kept at each end of a huge turn before tokenising: far more than any budget can use,
# and it spares tokenising a 100k-character answer only to cut it.
CHARS_PER_TOKEN_BOUND = 32

_AFFIXES: dict[int, tuple[object, list[int], list[int]]] = {}


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """Special token ids the tokenizer puts before and after a single text (e.g. [CLS]…[SEP], <bos>…)."""
    cached = _AFFIXES.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1], cached[2]
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            prefix, suffix = list(full[:start]), list(full[start + len(bare) :])
            break
    else:
        raise ValueError("cannot locate the text inside the tokenizer's special tokens")
    _AFFIXES[id(tokenizer)] = (tokenizer, prefix, suffix)  # holding the tokenizer keeps its id unique
    return prefix, suffix


def share_budget(needs: Sequence[int], budget: int) -> list[int]:
    """Water-filling: each part gets min(need, cap) with the largest cap whose total fits `budget`."""
    grants = [0] * len(needs)
    open_parts = [i for i, n in enumerate(needs) if n > 0]
    left = max(budget, 0)
    while open_parts and left > 0:
        cap = left // len(open_parts)
        satisfied = [i for i in open_parts if needs[i] - grants[i] <= cap]
        if not satisfied:
            for i in open_parts:
                grants[i] += cap
            # the remainder after equal shares goes to no one: giving it to one part breaks A/B symmetry
            break
        for i in satisfied:
            left -= needs[i] - grants[i]
            grants[i] = needs[i]
        open_parts = [i for i in open_parts if i not in satisfied]
    return grants


def cut_turn(ids: list[int], budget: int, marker: list[int]) -> list[int]:
    """`ids` if they fit, else head + marker + tail in `budget` tokens (a bare head when too tight)."""
    if len(ids) <= budget:
        return ids
    room = budget - len(marker)
    if room < 2:
        return ids[: max(budget, 0)]
    head = (room + 1) // 2
    return ids[:head] + marker + ids[len(ids) - (room - head) :]


def pack_field(turn_ids: list[list[int]], budget: int, separator: list[int], marker: list[int]) -> list[int]:
    """One field's turns under `budget`, latest turn first; earlier turns only while room remains."""
    kept: list[list[int]] = []
    left = budget
    for ids in reversed(turn_ids):
        cost_sep = len(separator) if kept else 0
        room = left - cost_sep
        if len(ids) > room and kept and room <= len(marker) + 1:
            break  # too little for a meaningful piece of an earlier turn; the later turns are in
        piece = cut_turn(ids, room, marker)
        if ids and not piece:
            break
        kept.append(piece)
        left -= len(piece) + cost_sep
    out: list[int] = []
    for i, piece in enumerate(reversed(kept)):
        out += (separator if i else []) + piece
    return out


def _field_need(turn_ids: list[list[int]], separator: list[int]) -> int:
    return sum(len(t) for t in turn_ids) + len(separator) * max(len(turn_ids) - 1, 0)


def _turn_texts(turns: Sequence[str | None], char_limit: int) -> list[str]:
    texts = []
    for turn in turns:
        text = turn or ""
        if len(text) > 2 * char_limit:
            text = text[:char_limit] + CUT_MARKER + text[-char_limit:]
        texts.append(text)
    return texts or [""]


def pack_segments(tokenizer, prompt_turns, response_a_turns, response_b_turns, max_length: int) -> list[list[int]]:
    """The three packed fields (header included), before special tokens; their total fits `max_length`."""
    return pack_fields(tokenizer, (prompt_turns, response_a_turns, response_b_turns), HEADERS, max_length)


def pack_fields(tokenizer, fields_turns, headers: Sequence[str], max_length: int) -> list[list[int]]:
    """Each field's turns under its header, sharing `max_length` (less special tokens) by water-filling."""
    prefix, suffix = special_affixes(tokenizer)
    fields = [_turn_texts(t, CHARS_PER_TOKEN_BOUND * max_length) for t in fields_turns]
    flat = [*headers, TURN_SEPARATOR, CUT_MARKER, *(text for field in fields for text in field)]
    encoded = tokenizer(flat, add_special_tokens=False, verbose=False)["input_ids"]  # long turns are cut below
    n = len(headers)
    header_ids, separator, marker = encoded[:n], encoded[n], encoded[n + 1]
    turn_ids, at = [], n + 2
    for field in fields:
        turn_ids.append(encoded[at : at + len(field)])
        at += len(field)
    budget = max_length - len(prefix) - len(suffix) - sum(len(h) for h in header_ids)
    if budget < len(headers):
        raise ValueError(f"max_length {max_length} leaves no room for text after special tokens and headers")
    grants = share_budget([_field_need(t, separator) for t in turn_ids], budget)
    return [h + pack_field(t, g, separator, marker) for h, t, g in zip(header_ids, turn_ids, grants, strict=True)]


def pack_pair(tokenizer, prompt_turns, response_a_turns, response_b_turns, max_length: int) -> list[int]:
    """Token ids of one model input: special tokens + prompt, response A and response B fields, <= max_length."""
    prefix, suffix = special_affixes(tokenizer)
    segments = pack_segments(tokenizer, prompt_turns, response_a_turns, response_b_turns, max_length)
    return prefix + [i for seg in segments for i in seg] + suffix


def encode_pairs(tokenizer, frame, max_length: int, swapped: bool | Sequence[bool] = False) -> list[list[int]]:
    """Packed ids of each row of `frame` (turn lists in `prompt`, `response_a`, `response_b`).

    `swapped` is one flag for all rows or one per row: a swapped row has response B in A's place and A in
    B's, so its label (and its predicted a/b probabilities) must be exchanged by the caller.
    """
    flags = np.broadcast_to(np.asarray(swapped, dtype=bool), (len(frame),))
    rows = zip(frame["prompt"], frame["response_a"], frame["response_b"], flags, strict=True)
    return [pack_pair(tokenizer, prompt, *((b, a) if swap else (a, b)), max_length) for prompt, a, b, swap in rows]


def encode_side(tokenizer, prompt_turns, response_turns, max_length: int) -> list[int]:
    """Packed ids of one (prompt, response) side: the response gets the whole budget with its prompt (the
    reward head scores the two sides of a pair by the same function)."""
    prefix, suffix = special_affixes(tokenizer)
    segments = pack_fields(tokenizer, (prompt_turns, response_turns), SINGLE_HEADERS, max_length)
    return prefix + [i for seg in segments for i in seg] + suffix


def encode_responses(tokenizer, frame, max_length: int, side: str) -> list[list[int]]:
    """Packed ids of (prompt, response `side`) for each row, `side` "a" or "b" (see `encode_side`)."""
    column = {"a": "response_a", "b": "response_b"}[side]
    return [encode_side(tokenizer, p, r, max_length) for p, r in zip(frame["prompt"], frame[column], strict=True)]
