import numpy as np
import pandas as pd
import pytest

from competition.errors import InputError
from competition.submission import validate_submission, write_submission


def _submission(n=4):
    probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=n)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)]})
    frame[["winner_model_a", "winner_model_b", "winner_tie"]] = probs
    return frame


def test_valid_submission_passes():
    sub = _submission()
    validate_submission(sub, sub["id"])


def _defects():
    def missing_column(s):
        return s.drop(columns=["winner_tie"])

    def extra_column(s):
        return s.assign(extra=1)

    def wrong_order(s):
        return s.iloc[::-1].reset_index(drop=True)

    def fewer_rows(s):
        return s.iloc[:-1]

    def nan_value(s):
        s.loc[1, "winner_model_a"] = np.nan
        return s

    def negative(s):
        s.loc[2, "winner_model_b"] = -0.1
        return s

    def not_summing(s):
        s.loc[0, "winner_tie"] += 0.2
        return s

    return {f.__name__: f for f in (missing_column, extra_column, wrong_order, fewer_rows, nan_value, negative, not_summing)}


@pytest.mark.parametrize("defect", list(_defects()))
def test_validator_catches_each_defect(defect):
    sub = _submission()
    ids = sub["id"].copy()
    with pytest.raises(InputError):
        validate_submission(_defects()[defect](sub.copy()), ids)


def test_failed_write_leaves_previous_file_untouched(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("previous")
    with pytest.raises(InputError):
        write_submission(path, ["a", "b"], np.array([[0.5, 0.5, 0.0], [0.9, 0.9, 0.9]]))
    assert path.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [path]
