"""Feature tables in parts: blocks never split a prompt, parts built here or by Ray equal the in-process table
exactly, a killed build resumes, and `cv --features-table` gives the out-of-fold predictions of `cv`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cli import main
from competition.predictions import load_predictions
from data.labelled import load_unlabelled as load_test
from features.parts import build_parts, prompt_blocks, read_parts
from features.registry import DEFAULT_GROUPS, build_features, computed
from tests.conftest import make_arena_frame


def test_blocks_hold_whole_prompts_and_every_row_once():
    groups = np.repeat(np.arange(30), np.random.default_rng(0).integers(1, 9, 30))
    np.random.default_rng(1).shuffle(groups)
    blocks = prompt_blocks(groups, 25)
    assert sorted(np.concatenate(blocks)) == list(range(len(groups)))
    seen = [set(groups[b]) for b in blocks]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "train.csv"
    make_arena_frame(n_prompts=25, rows_per_prompt=9, seed=6).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_parts_equal_the_in_process_table_exactly(pairs, tmp_path, engine):
    if engine == "ray":
        pytest.importorskip("ray")
    frame = load_test(pairs)
    groups = computed(DEFAULT_GROUPS)
    whole = build_features(frame, groups, None)
    facts = build_parts(frame, groups, frame["group"].to_numpy(), tmp_path / "parts", 40, engine)
    assert facts["parts"] > 3
    pd.testing.assert_frame_equal(read_parts(tmp_path / "parts", frame, groups), whole, check_exact=True)
    if engine == "ray":
        import ray

        ray.shutdown()


def test_a_killed_build_resumes_with_the_missing_parts_only(pairs, tmp_path):
    frame = load_test(pairs)
    groups = computed(("lengths", "consensus"))
    first = build_parts(frame, groups, frame["group"].to_numpy(), tmp_path / "parts", 40)
    (tmp_path / "parts" / "part-00001.parquet").unlink()  # as if killed before this part was written
    again = build_parts(frame, groups, frame["group"].to_numpy(), tmp_path / "parts", 40)
    assert again["built"] == 1 and again["skipped"] == first["parts"] - 1
    pd.testing.assert_frame_equal(read_parts(tmp_path / "parts", frame, groups), build_features(frame, groups, None))


def test_cv_reads_a_feature_table_and_predicts_as_it_computes(pairs, tmp_path, capsys):
    common = ["--train", str(pairs), "--test", "", "--folds", "3", "--set", "lgbm.max_rounds=30", "--set", "cv.fold_dir="]
    assert main(["features", "--train", str(pairs), "--out", str(tmp_path / "feat"), "--rows-per-block", "50"]) == 0
    assert main(["cv", *common, "--out", str(tmp_path / "computed")]) == 0
    assert main(["cv", *common, "--out", str(tmp_path / "from_parts"), "--features-table", str(tmp_path / "feat")]) == 0
    a = load_predictions(tmp_path / "computed" / "oof.parquet")
    b = load_predictions(tmp_path / "from_parts" / "oof.parquet")
    pd.testing.assert_frame_equal(a, b)
    other = tmp_path / "other.csv"
    make_arena_frame(n_prompts=5, rows_per_prompt=4, seed=99).to_csv(other, index=False)
    capsys.readouterr()
    assert main(["cv", "--train", str(other), "--test", "", "--folds", "2", "--out", str(tmp_path / "x"),
                 "--features-table", str(tmp_path / "feat")]) == 2  # fmt: skip
    assert "built from other rows" in capsys.readouterr().err
