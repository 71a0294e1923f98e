import json
import logging

import pandas as pd
import pytest

from competition.errors import InputError
from data.loader import append_extra, load_arena_csv, parse_turns


def test_tricky_cells_are_repaired_and_counted(tricky_csv, caplog):
    with caplog.at_level(logging.WARNING):
        frame = load_arena_csv(tricky_csv)
    assert frame.loc[0, "prompt"] == ["Hi", None, "again"]
    assert frame.loc[0, "response_a"] == [None]
    assert frame.loc[1, "prompt"] == ["plain text prompt"]  # not JSON: kept whole
    assert frame.loc[1, "response_b"] == ["{broken"]
    assert "\ufffd" in frame.loc[2, "prompt"][0]  # lone surrogate replaced
    report = frame.attrs["parse_report"]
    assert report.invalid_json == {"prompt": 1, "response_a": 0, "response_b": 1}
    assert report.surrogates["prompt"] == 1
    assert "repaired cells" in caplog.text
    assert "label" not in frame.columns


@pytest.mark.parametrize(
    ("cell", "turns"),
    [
        ('["a", null]', ["a", None]),
        ("null", [None]),
        ("[]", [None]),
        ('"just a string"', ["just a string"]),
        ("[1, 2]", ["1", "2"]),
    ],
)
def test_parse_turns_shapes(cell, turns):
    assert parse_turns(cell)[0] == turns


def _write(tmp_path, frame_or_text, name="bad.csv"):
    path = tmp_path / name
    if isinstance(frame_or_text, str):
        path.write_text(frame_or_text)
    else:
        frame_or_text.to_csv(path, index=False)
    return path


def _good(n=3):
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "prompt": ['["p"]'] * n,
            "response_a": ['["a"]'] * n,
            "response_b": ['["b"]'] * n,
            "winner_model_a": [1] * n,
            "winner_model_b": [0] * n,
            "winner_tie": [0] * n,
        }
    )


def test_missing_column_names_the_column(tmp_path):
    path = _write(tmp_path, _good().drop(columns=["response_b"]))
    with pytest.raises(InputError, match=r"bad\.csv.*column 'response_b'"):
        load_arena_csv(path)


def test_duplicate_id_names_row_and_column(tmp_path):
    frame = _good()
    frame.loc[2, "id"] = "0"
    with pytest.raises(InputError, match=r"row 3, column 'id': duplicate id '0'"):
        load_arena_csv(_write(tmp_path, frame))


def test_labels_not_one_hot(tmp_path):
    frame = _good()
    frame.loc[1, "winner_tie"] = 1
    with pytest.raises(InputError, match=r"row 2.*not one-hot"):
        load_arena_csv(_write(tmp_path, frame), require_labels=True)
    frame["winner_tie"] = frame["winner_tie"].astype(object)
    frame.loc[1, "winner_tie"] = "yes"
    with pytest.raises(InputError, match=r"row 2, column 'winner_tie'"):
        load_arena_csv(_write(tmp_path, frame), require_labels=True)


@pytest.mark.parametrize(
    ("content", "message"), [("", "empty"), ("id,prompt,response_a,response_b\n", "no rows"), ("\x00\x01\x02binary", "not a CSV")]
)
def test_empty_or_not_csv(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        load_arena_csv(_write(tmp_path, content))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_arena_csv(tmp_path / "nope.csv")


def test_labels_required_for_training(tmp_path):
    with pytest.raises(InputError, match="column 'winner_model_a'"):
        load_arena_csv(_write(tmp_path, _good().drop(columns=["winner_model_a"])), require_labels=True)


def test_extra_data_is_appended_without_duplicates(tmp_path):
    train = load_arena_csv(_write(tmp_path, _good(3), "train.csv"), require_labels=True)
    extra_frame = _good(4)
    extra_frame["id"] = ["0", "x1", "x2", "x3"]  # "0" repeats an id
    extra_frame.loc[2, "prompt"] = json.dumps(["different"])  # the only new content
    extra = load_arena_csv(_write(tmp_path, extra_frame, "extra.csv"), require_labels=True)
    combined = append_extra(train, extra)
    assert len(combined) == 4
    assert "x2" in set(combined["id"])
