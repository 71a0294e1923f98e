"""Test files read in chunks of whole prompts: the rows, the errors and the submission of the in-memory path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TRICKY_ROWS, make_arena_frame
from test_hostile_inputs import VARIANTS, write_variant

import data.stream
from competition.config import load_config
from competition.errors import InputError
from competition.folds import prompt_groups
from competition.submission import write_submission
from data.loader import load_arena_csv
from data.stream import read_prompt_chunks, scan_prompt_chunks
from stages import training


def shuffled_file(path, seed=0) -> str:
    """Prompts scattered over the file, as in arena-bench-pairs, plus the loader's hard cases."""
    frame = pd.concat([make_arena_frame(n_prompts=9, rows_per_prompt=7, seed=seed), pd.DataFrame(TRICKY_ROWS)])
    frame = frame.sample(frac=1.0, random_state=seed).fillna({"winner_model_a": 0, "winner_model_b": 0, "winner_tie": 1})
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("chunk_rows", [1, 10, 25, 10_000])
def test_chunks_hold_whole_prompts_and_the_rows_load_arena_csv_gives(tmp_path, chunk_rows):
    path = shuffled_file(tmp_path / "t.csv")
    whole = load_arena_csv(path)
    whole["group"] = prompt_groups(whole).to_numpy()
    plan = scan_prompt_chunks(path, chunk_rows)
    chunks = list(read_prompt_chunks(plan))
    assert len(chunks) == plan.chunks and plan.ids.tolist() == whole["id"].tolist()
    rows = np.concatenate([r for r, _ in chunks])
    assert sorted(rows) == list(range(len(whole)))
    seen: set = set()
    for _, frame in chunks:
        assert not set(frame["group"]) & seen  # a prompt's rows all sit in one chunk
        seen |= set(frame["group"])
    if chunk_rows < 10:
        assert plan.chunks == whole["group"].nunique()
    frame = pd.concat([f for _, f in chunks], ignore_index=True).iloc[np.argsort(rows)].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, whole)


def multiple_errors(kind: str, path) -> None:
    """Two faults in one file: the in-memory loader reports the one it checks first, wherever it sits."""
    frame = make_arena_frame(n_prompts=4, rows_per_prompt=5, seed=1).astype({"winner_model_b": object})
    if kind == "extra_field":  # a malformed row after an empty id: pandas stops first
        frame.loc[2, "id"] = ""
        lines = frame.to_csv(index=False).splitlines()
        lines[12] += ',"extra"'
        path.write_text("\n".join(lines) + "\n")
        return
    first, late = {"id_after_label": ("winner_model_b", "id"), "label_columns": ("winner_model_b", "winner_model_a")}[kind]
    frame.loc[3, first] = "" if first == "id" else "maybe"
    frame.loc[15, late] = "" if late == "id" else 7
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("case", [*VARIANTS, "id_after_label", "label_columns", "extra_field"])
def test_a_bad_file_gets_the_in_memory_error(tmp_path, monkeypatch, case):
    monkeypatch.setattr(data.stream, "READ_ROWS", 4)  # the faults land in different slices of the file
    path = tmp_path / "bad.csv"
    (write_variant if case in VARIANTS else multiple_errors)(case, path)
    with pytest.raises(InputError) as expected:
        load_arena_csv(path)
    with pytest.raises(InputError) as streamed:
        scan_prompt_chunks(path, 50)
    assert str(streamed.value) == str(expected.value)


def test_streamed_submission_is_the_in_memory_one_byte_for_byte(tmp_path):
    train = tmp_path / "train.csv"
    make_arena_frame(n_prompts=14, rows_per_prompt=6, seed=5).to_csv(train, index=False)
    test = shuffled_file(tmp_path / "test.csv", seed=6)
    quick = {"lgbm": {"num_threads": 1, "max_rounds": 60}, "features": {"cache_dir": ""}, "cv": {"fold_dir": ""}}
    settings = {**quick, "data": {"train": str(train), "test": test}, "out": str(tmp_path / "run")}
    model_dir = training.run_fit(load_config(training.training_config("lgbm"), None, [settings]))
    ids, probs = training.predict(model_dir, test)
    in_memory = write_submission(tmp_path / "in_memory.csv", ids, probs).read_bytes()
    for chunk_rows in (1, 8, 10_000):
        cfg = load_config(
            training.training_config("lgbm"),
            None,
            [settings, {"predict": {"chunk_rows": chunk_rows}, "submission": str(tmp_path / f"s{chunk_rows}.csv")}],
        )
        submitted = training.run_predict(cfg, model_dir)
        assert submitted.rows == len(ids) and submitted.path.read_bytes() == in_memory
