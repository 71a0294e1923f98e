"""The prediction files every model writes and the blender, `predict` and `infer` read.

A run directory holds `oof.parquet` (id, fold, label, three probability columns) and
`test.parquet` (id and three probability columns). Rows are matched by id, never by position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import write_atomic
from competition.errors import InputError
from competition.labels import LABEL_COLUMNS, N_CLASSES, as_probabilities

OOF_FILE = "oof.parquet"
TEST_FILE = "test.parquet"


def prediction_frame(ids, probs: np.ndarray, normalise: bool = True, **extra_columns) -> pd.DataFrame:
    """`normalise=False` for probabilities read back from prediction files: they were normalised when first written,
    and dividing by their row sums again could move the last bit, so a combined file would differ from its parts."""
    frame = pd.DataFrame({"id": np.asarray(ids).astype(str)})
    for name, values in extra_columns.items():
        frame[name] = np.asarray(values)
    checked = as_probabilities(probs)
    frame[list(LABEL_COLUMNS)] = checked if normalise else np.asarray(probs, dtype=np.float64)
    return frame


def save_predictions(path: str | Path, ids, probs: np.ndarray, normalise: bool = True, **extra_columns) -> Path:
    frame = prediction_frame(ids, probs, normalise, **extra_columns)
    return write_atomic(path, lambda p: frame.to_parquet(p, index=False))


def load_predictions(path: str | Path) -> pd.DataFrame:
    """A prediction file, checked: unique ids, probabilities finite, in [0, 1], rows summing to 1."""
    path = Path(path)
    if not path.exists():
        raise InputError("prediction file not found (run cv/fit first)", path)
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a file that is not parquet
        raise InputError(f"not a readable parquet file ({type(err).__name__})", path) from None
    missing = [c for c in ("id", *LABEL_COLUMNS) if c not in frame.columns]
    if missing:
        raise InputError("not a prediction file", path, column=missing[0])
    frame["id"] = frame["id"].astype(str)
    dup = np.flatnonzero(frame["id"].duplicated().to_numpy())
    if len(dup):
        raise InputError(f"duplicate id {frame['id'].iloc[dup[0]]!r}", path, int(dup[0]) + 1, "id")
    probs = frame[list(LABEL_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise InputError(f"probability {probs[i, j]!r} is not a number in [0, 1]", path, i + 1, LABEL_COLUMNS[j])
    off = np.flatnonzero(np.abs(probs.sum(axis=1) - 1) > 1e-6)
    if len(off):
        raise InputError(f"probabilities sum to {probs[off[0]].sum():.6f}, not 1", path, int(off[0]) + 1)
    _check_class_column(frame, path, "label", lambda v: np.isin(v, np.arange(N_CLASSES)), "a class id 0, 1 or 2")
    _check_class_column(frame, path, "fold", lambda v: np.isfinite(v) & (v >= 0) & (v == np.round(v)), "a fold number >= 0")
    return frame


def _check_class_column(frame: pd.DataFrame, path: Path, column: str, valid, what: str) -> None:
    """An optional integer column (label, fold): every value must pass `valid`, else the first bad row is named."""
    if column not in frame.columns:
        return
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~valid(values))
    if len(bad):
        raise InputError(f"{frame[column].iloc[bad[0]]!r} is not {what}", path, int(bad[0]) + 1, column)


def probabilities_for(frame: pd.DataFrame, ids) -> np.ndarray:
    """The (n, 3) probabilities of `frame` in the order of `ids`; every id must be present."""
    indexed = frame.set_index("id")[list(LABEL_COLUMNS)]
    wanted = pd.Index(np.asarray(ids).astype(str))
    missing = wanted.difference(indexed.index)
    if len(missing):
        raise InputError(f"{len(missing)} ids have no prediction, e.g. {missing[0]!r}")
    return indexed.loc[wanted].to_numpy(dtype=np.float64)
