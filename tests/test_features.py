import numpy as np
import pandas as pd
import pytest

from competition.folds import prompt_groups
from data.loader import load_arena_csv
from features.paired import swap_features
from features.registry import DEFAULT_GROUPS, FEATURE_GROUPS, build_features, group_of
from features.text import text_frame


@pytest.fixture
def tricky(tricky_csv):
    frame = load_arena_csv(tricky_csv)
    frame["group"] = prompt_groups(frame)
    return frame


def _swapped(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["response_a"], out["response_b"] = frame["response_b"], frame["response_a"]
    return out


@pytest.mark.parametrize("group", DEFAULT_GROUPS)
def test_every_group_handles_the_tricky_batch(tricky, group):
    table = build_features(tricky, (group,))
    assert len(table) == len(tricky)
    assert all(group_of(c) == group for c in table.columns)
    assert table.dtypes.eq("float64").all()
    assert not np.isinf(table.to_numpy()).any()


@pytest.mark.parametrize("group", DEFAULT_GROUPS)
def test_exchanging_responses_swaps_columns_and_flips_differences(arena_csv, tricky, group):
    frame = pd.concat([load_arena_csv(arena_csv(n_prompts=3, rows_per_prompt=4)), tricky], ignore_index=True)
    frame["group"] = prompt_groups(frame)
    direct = build_features(frame, (group,))
    exchanged = build_features(_swapped(frame), (group,))
    pd.testing.assert_frame_equal(swap_features(direct), exchanged, check_exact=False, atol=1e-12)


def test_column_names_unique_and_prefixed(arena_csv):
    frame = load_arena_csv(arena_csv(n_prompts=2, rows_per_prompt=3))
    table = build_features(frame, (*DEFAULT_GROUPS, "model_names"))
    assert table.columns.is_unique
    assert {group_of(c) for c in table.columns} == {*DEFAULT_GROUPS, "model_names"}


def test_expected_values_on_tricky_rows(tricky):
    table = build_features(tricky, ("nulls", "refusal", "duplicates", "markdown", "lengths"))
    row = dict(zip(tricky["id"], range(len(tricky)), strict=True))
    assert table.loc[row["t1"], "nulls__a_all_null"] == 1 and table.loc[row["t1"], "nulls__b_empty"] == 1
    assert table.loc[row["t1"], "nulls__prompt_null_turns"] == 1
    assert table.loc[row["t3"], "markdown__a_code_fences"] == 1 and table.loc[row["t3"], "markdown__a_table_rows"] == 2
    assert table.loc[row["t3"], "refusal__b_refusal"] == 1  # Spanish and Chinese refusals
    assert table.loc[row["t4"], "refusal__pair_both"] == 1
    assert table.loc[row["t4"], "duplicates__pair_identical"] == 1
    assert table.loc[row["t4"], "lengths__a_turns"] == 2


def test_consensus_uses_only_rows_of_the_same_prompt(arena_csv):
    frame = load_arena_csv(arena_csv(n_prompts=4, rows_per_prompt=5))
    frame["group"] = prompt_groups(frame)
    whole = build_features(frame, ("consensus",))
    first_prompt = frame["group"] == frame["group"].iloc[0]
    alone = build_features(frame[first_prompt], ("consensus",))
    pd.testing.assert_frame_equal(whole[first_prompt], alone)


def test_cache_returns_the_same_table(arena_csv, tmp_path):
    frame = load_arena_csv(arena_csv(n_prompts=2, rows_per_prompt=3))
    cold = build_features(frame, DEFAULT_GROUPS, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.parquet"))) == len(DEFAULT_GROUPS)
    warm = build_features(frame, DEFAULT_GROUPS, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(cold, warm)
    changed = frame.copy()
    changed.at[0, "response_a"] = ["something else entirely"]
    assert not build_features(changed, ("lengths",), cache_dir=tmp_path).equals(cold.filter(like="lengths__"))


def test_registry_is_explicit_and_complete():
    assert set(DEFAULT_GROUPS) <= set(FEATURE_GROUPS)
    assert "model_names" not in DEFAULT_GROUPS  # the Kaggle test set has no model columns
    assert all(g.cost in ("cheap", "moderate", "trained") for g in FEATURE_GROUPS.values())
    assert all((g.cost == "trained") == (g.trainer is not None) == (g.compute is None) for g in FEATURE_GROUPS.values())


def test_text_frame_counts_turns(tricky):
    tf = text_frame(tricky)
    assert tf["prompt_turns"].to_list()[0] == 3 and tf["prompt_null_turns"].to_list()[0] == 1
