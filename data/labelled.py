"""The one way a command gets its rows: labelled training rows (extra rows appended), or rows to score, each with
its prompt group (the key folds are grouped by: rows sharing a prompt are not independent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.folds import prompt_groups
from competition.settings import DataConfig
from data.loader import append_extra, load_arena_csv
from data.tables import check_model_names


def with_groups(frame: pd.DataFrame) -> pd.DataFrame:
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def require_battles(frame: pd.DataFrame, path: str | Path, why: str) -> None:
    """Both model names on every row, valid, and never a model against itself."""
    for column in ("model_a", "model_b"):
        if column not in frame.columns:
            raise InputError(f"{why}: the file needs model_a and model_b", path, column=column)
    check_model_names(frame, path)
    same = np.flatnonzero((frame["model_a"] == frame["model_b"]).to_numpy())
    if len(same):
        raise InputError(f"a model against itself ({frame['model_a'].iloc[same[0]]!r}) is not a battle", path, int(same[0]) + 1)


def load_labelled(data: DataConfig, battles_for: str = "") -> pd.DataFrame:
    """The training rows of `data` (its extra rows appended without duplicates), each with its prompt group.

    With `battles_for` (the reason, e.g. "P2L trains on battles") every row must name both models."""
    frame = load_arena_csv(data.train, require_labels=True, max_rows=data.max_rows)
    if data.extra:
        frame = append_extra(frame, load_arena_csv(data.extra, require_labels=True, max_rows=data.max_rows))
    if battles_for:
        require_battles(frame, data.train, battles_for)
    return with_groups(frame)


def load_unlabelled(path: str | Path | None) -> pd.DataFrame | None:
    """Rows to score (a test file, never cut by max_rows: its predictions become submissions), with prompt groups."""
    if not path:
        return None
    return with_groups(load_arena_csv(path, require_labels=False))
