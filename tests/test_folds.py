import numpy as np
import pandas as pd
import pytest

from competition.errors import InputError
from competition.folds import assign_folds, normalise_prompt, prompt_groups
from data.loader import load_arena_csv


def test_no_prompt_in_both_train_and_validation(arena_csv):
    frame = load_arena_csv(arena_csv(n_prompts=15, rows_per_prompt=7), require_labels=True)
    groups = prompt_groups(frame)
    folds = assign_folds(frame["label"].to_numpy(), groups, n_folds=5, seed=3)
    assert set(folds) == set(range(5))
    for fold in range(5):
        valid_prompts = set(frame.loc[folds == fold, "prompt"].map(normalise_prompt))
        train_prompts = set(frame.loc[folds != fold, "prompt"].map(normalise_prompt))
        assert not valid_prompts & train_prompts


def test_group_key_ignores_case_and_spacing_and_prefers_question_id():
    frame = pd.DataFrame({"prompt": [["Hello  World"], ["hello world "], ["other"]]})
    keys = prompt_groups(frame)
    assert keys[0] == keys[1] != keys[2]
    frame["question_id"] = ["q1", "q2", ""]
    keys = prompt_groups(frame)
    assert list(keys[:2]) == ["q1", "q2"] and keys[2] not in ("q1", "q2", "")


def test_folds_are_seeded_and_work_without_labels():
    groups = pd.Series(np.repeat(np.arange(20), 3).astype(str))
    a = assign_folds(None, groups, 4, seed=1)
    assert np.array_equal(a, assign_folds(None, groups, 4, seed=1))
    assert not np.array_equal(a, assign_folds(None, groups, 4, seed=2))
    with pytest.raises(InputError, match="distinct prompts"):
        assign_folds(None, groups[:6], 5, seed=0)
