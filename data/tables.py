"""Reading the user's side files (battles, grades, prompt lists) with one-line errors naming file, row and column.

The loader's checked CSV reader does the reading (missing, empty, binary, UTF-16 or header-only files are
one line); these helpers add the columns each file needs and the checks on model names and ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import require
from competition.errors import InputError
from data.loader import check_ids, parse_turns, read_csv_checked


def read_columns(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """The `required` (and present `optional`) columns of a CSV, every cell as text; InputError on a bad file."""
    path = Path(path)
    frame = read_csv_checked(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12]))
        raise InputError(f"missing required column (found {found})", path, column=missing[0])
    return frame[[c for c in (*required, *optional) if c in frame.columns]]


def check_model_names(frame: pd.DataFrame, path: str | Path | None, columns: tuple[str, ...] = ("model_a", "model_b")) -> None:
    """An empty (or blank) model name is an error naming its row and column."""
    for column in columns:
        blank = np.flatnonzero(frame[column].astype(str).str.strip().eq("").to_numpy())
        if len(blank):
            raise InputError("empty model name", path, int(blank[0]) + 1, column)


def check_unique_ids(frame: pd.DataFrame, path: str | Path | None, column: str = "id") -> None:
    """Battle ids, when the file has them, are present and unique (a repeated id is a battle counted twice)."""
    if column in frame.columns:
        check_ids(frame[column], path, column)


def read_grades(path: str | Path) -> pd.DataFrame:
    """question_id, model, grade (a finite number) per row; one grade per (question_id, model)."""
    frame = read_columns(path, ("question_id", "model", "grade")).copy()
    check_model_names(frame, path, ("model",))
    blank = np.flatnonzero(frame["question_id"].str.strip().eq("").to_numpy())
    if len(blank):
        raise InputError("empty question_id", path, int(blank[0]) + 1, "question_id")
    grade = pd.to_numeric(frame["grade"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(grade))
    if len(bad):
        raise InputError(f"grade must be a number, got {frame['grade'].iloc[bad[0]]!r}", path, int(bad[0]) + 1, "grade")
    dup = np.flatnonzero(frame.duplicated(["question_id", "model"]).to_numpy())
    if len(dup):
        key = tuple(frame[["question_id", "model"]].iloc[dup[0]])
        raise InputError(f"second grade for (question_id, model) {key!r}", path, int(dup[0]) + 1, "model")
    frame["grade"] = grade
    return frame


def check_names(names: tuple[str, ...], field_name: str) -> None:
    """Model names given in a config: non-empty, unrepeated, listed with spaces rather than commas."""
    require(all(n.strip() for n in names), field_name, "must not hold an empty model name")
    require(len(set(names)) == len(names), field_name, "must not repeat a model")
    require(all("," not in n for n in names), field_name, "are separate names (--models a b c), not one comma-separated text")


def read_prompts(path: str | Path, id_column: str = "id") -> pd.DataFrame:
    """Prompt texts (list of turns) from any CSV with a `prompt` column, keyed by `id_column` (or row number)."""
    frame = read_columns(path, ("prompt",), (id_column,)).copy()
    if id_column not in frame.columns:
        frame[id_column] = [str(i + 1) for i in range(len(frame))]
    frame["prompt"] = [parse_turns(cell)[0] for cell in frame["prompt"]]
    return frame
