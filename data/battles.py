"""Battles as the rating fit reads them: model indices and an outcome (1 a wins, 0 b wins, 0.5 tie).

Two input layouts are accepted: a `winner` column (model_a | model_b | tie | both_bad, as in Chatbot
Arena exports) or the Kaggle label columns (winner_model_a, winner_model_b, winner_tie).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import LABEL_COLUMNS
from data.loader import labels_from_columns
from data.tables import check_model_names, check_unique_ids, read_columns

log = logging.getLogger(__name__)
WINNER_OUTCOMES = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
BOTH_BAD = ("both_bad", "tie (bothbad)")
BOTH_BAD_POLICIES = ("tie", "drop")
SPLITS = ("random", "row_order")


def outcomes_from_frame(frame: pd.DataFrame, both_bad: str = "tie", path: str | Path | None = None) -> pd.DataFrame:
    """`frame` with an `outcome` column and a `both_bad` flag; rows are dropped only under both_bad="drop"."""
    if both_bad not in BOTH_BAD_POLICIES:
        raise InputError(f"both_bad must be one of {', '.join(BOTH_BAD_POLICIES)}, got {both_bad!r}")
    for col in ("model_a", "model_b"):
        if col not in frame.columns:
            raise InputError("battles need model_a and model_b columns", path, column=col)
    check_model_names(frame, path)
    check_unique_ids(frame, path)
    out = frame.copy()
    if "winner" in frame.columns:
        winner = frame["winner"].astype(str).str.strip()
        is_bad = winner.isin(BOTH_BAD)
        outcome = winner.map(WINNER_OUTCOMES).where(~is_bad, 0.5)
        bad_rows = np.flatnonzero(outcome.isna().to_numpy())
        if len(bad_rows):
            known = ", ".join([*WINNER_OUTCOMES, *BOTH_BAD])
            raise InputError(
                f"unknown winner {winner.iloc[bad_rows[0]]!r} (known: {known})", path, int(bad_rows[0]) + 1, "winner"
            )
    elif "label" in frame.columns or all(c in frame.columns for c in LABEL_COLUMNS):
        label = (
            frame["label"]
            if "label" in frame.columns
            else pd.Series(np.argmax(frame[list(LABEL_COLUMNS)].to_numpy(float), axis=1))
        )
        outcome = pd.Series(np.array([1.0, 0.0, 0.5])[label.to_numpy(dtype=np.int64)], index=frame.index)
        is_bad = pd.Series(False, index=frame.index)
    else:
        raise InputError("battles need a `winner` column or the label columns", path, column="winner")
    out["outcome"], out["both_bad"] = outcome.to_numpy(dtype=np.float64), is_bad.to_numpy()
    # A model against itself says nothing about ratings (real exports hold a few such rows).
    same = (frame["model_a"] == frame["model_b"]).to_numpy()
    if same.any():
        log.warning("%s: dropped %d battles of a model against itself", path or "battles", int(same.sum()))
    out = out[~same & ~(out["both_bad"].to_numpy() & (both_bad == "drop"))]
    return out.reset_index(drop=True)


def read_battles(path: str | Path, both_bad: str = "tie", max_rows: int | None = None) -> pd.DataFrame:
    """Reads the columns a rating needs; a file the fit cannot use is one line naming file, row and column."""
    path = Path(path)
    frame = read_columns(path, ("model_a", "model_b"), ("id", "winner", *LABEL_COLUMNS))
    if max_rows is not None:
        frame = frame.iloc[:max_rows]
    if "winner" not in frame.columns:
        missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError("battles need a `winner` column or the three label columns", path, column=missing[0])
        frame = frame.assign(label=labels_from_columns(frame, path))  # one-hot 0/1 checked, bad rows named
    return outcomes_from_frame(frame, both_bad, path)


def encode_models(frame: pd.DataFrame, models: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Model indices for each side, sorted model names (or the given list: unknown names get -1)."""
    # names are looked up once per distinct name, not once per battle (135k battles, 53 names)
    (codes_a, names_a), (codes_b, names_b) = pd.factorize(frame["model_a"]), pd.factorize(frame["model_b"])
    if models is None:
        models = sorted(set(names_a) | set(names_b))
    index = pd.Index(models)
    a, b = (np.append(index.get_indexer(names), -1)[codes] for codes, names in ((codes_a, names_a), (codes_b, names_b)))
    return a.astype(np.int64), b.astype(np.int64), list(models)


def split_battles(n: int, holdout_share: float, seed: int, how: str = "random") -> np.ndarray:
    """Boolean mask of held-out battles. "row_order" holds out the last rows (a time split when rows are in time order)."""
    n_out = int(round(n * holdout_share))
    mask = np.zeros(n, dtype=bool)
    if how == "random":
        mask[np.random.default_rng(seed).permutation(n)[:n_out]] = True
    elif how == "row_order":
        mask[n - n_out :] = True
    else:
        raise InputError(f"split must be 'random' or 'row_order', got {how!r}")
    return mask
