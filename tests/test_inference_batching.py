"""The plan's arithmetic: token budgets, coverage, padding efficiency and token-balanced workers."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.batching import balance_by_tokens, group_shards, padded_tokens, padding_efficiency
from models.transformer.batches import cut_batches, longest_first

lengths_strategy = st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=200)


@settings(max_examples=150, deadline=None)
@given(lengths_strategy, st.integers(min_value=1, max_value=2000), st.booleans(), st.one_of(st.none(), st.integers(1, 40)))
def test_batches_respect_the_budget_and_cover_every_item_once_in_order(lengths, budget, sort, max_rows):
    lengths = np.asarray(lengths)
    order = longest_first(lengths) if sort else np.arange(len(lengths))
    batches = cut_batches(lengths, order, budget, max_rows)
    assert np.array_equal(np.concatenate(batches), order)
    for batch in batches:
        over = padded_tokens(lengths, batch) > budget
        assert not over or len(batch) == 1, "only a single over-long row may exceed the budget"
        assert max_rows is None or len(batch) <= max_rows


def test_sorted_batches_pad_far_less_than_file_order_on_skewed_lengths():
    # Not a theorem for every input (greedy cuts can land unluckily), so a realistic long-tailed sample.
    lengths = np.minimum(np.random.default_rng(0).lognormal(6, 0.8, 3000).astype(int) + 1, 1536)
    sorted_eff = padding_efficiency(lengths, cut_batches(lengths, longest_first(lengths), 16384))
    file_eff = padding_efficiency(lengths, cut_batches(lengths, np.arange(len(lengths)), 16384))
    assert sorted_eff >= 0.95
    assert file_eff < 0.8


def test_longest_first_is_stable_and_descending():
    assert longest_first(np.array([3, 5, 3, 9, 5])).tolist() == [3, 1, 4, 0, 2]


def test_padding_efficiency_by_hand():
    lengths = np.array([4, 2, 3, 3])
    # batches [4, 2] → 8 processed, 6 real; [3, 3] → 6 processed, 6 real
    assert padding_efficiency(lengths, [np.array([0, 1]), np.array([2, 3])]) == 12 / 14


def test_shards_group_whole_batches():
    batches = [np.arange(i * 3, i * 3 + 3) for i in range(5)]
    shards = group_shards(batches, shard_rows=6)
    assert [len(s) for s in shards] == [2, 2, 1]
    assert np.array_equal(np.concatenate([b for s in shards for b in s]), np.arange(15))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=0, max_size=60), st.integers(1, 5))
def test_workers_are_balanced_by_tokens(costs, n_workers):
    assigned = balance_by_tokens(costs, n_workers)
    assert sorted(s for shards in assigned for s in shards) == list(range(len(costs)))
    loads = [sum(costs[s] for s in shards) for shards in assigned]
    if costs:
        assert max(loads) - min(loads) <= max(costs)  # the greedy LPT bound
    assert all(shards == sorted(shards) for shards in assigned)
