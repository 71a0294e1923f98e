"""Submission files: the validator Kaggle would apply, and an atomic writer that validates first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import write_atomic
from competition.errors import InputError
from competition.labels import LABEL_COLUMNS

SUBMISSION_COLUMNS = ["id", *LABEL_COLUMNS]
ROW_SUM_TOLERANCE = 1e-6


def validate_submission(submission: pd.DataFrame, test_ids, path: str | Path = "submission") -> None:
    """Raises InputError unless: columns are id + the three winners, ids equal the test file's in order,
    probabilities are finite, within [0, 1], and each row sums to 1."""
    if list(submission.columns) != SUBMISSION_COLUMNS:
        extra = [c for c in submission.columns if c not in SUBMISSION_COLUMNS]
        missing = [c for c in SUBMISSION_COLUMNS if c not in submission.columns]
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}" if extra else "columns out of order"
        raise InputError(
            f"columns must be {', '.join(SUBMISSION_COLUMNS)} ({detail})", path, column=(missing or extra or ["id"])[0]
        )
    ids = submission["id"].astype(str).to_numpy()
    expected = np.asarray(test_ids).astype(str)
    if len(ids) != len(expected):
        raise InputError(f"{len(ids)} rows but the test file has {len(expected)}", path)
    mismatch = np.flatnonzero(ids != expected)
    if len(mismatch):
        i = int(mismatch[0])
        raise InputError(f"id {ids[i]!r} where the test file has {expected[i]!r}", path, i + 1, "id")
    probs = submission[list(LABEL_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise InputError(
            f"probability {submission.iloc[i, j + 1]!r} is not a finite number in [0, 1]", path, i + 1, LABEL_COLUMNS[j]
        )
    off = np.flatnonzero(np.abs(probs.sum(axis=1) - 1) > ROW_SUM_TOLERANCE)
    if len(off):
        i = int(off[0])
        raise InputError(f"probabilities sum to {probs[i].sum():.6f}, not 1", path, i + 1)


def write_submission(path: str | Path, ids, probs: np.ndarray) -> Path:
    """Validates, then writes atomically: a failed check leaves any earlier file untouched."""
    frame = pd.DataFrame({"id": np.asarray(ids).astype(str)})
    frame[list(LABEL_COLUMNS)] = np.asarray(probs, dtype=np.float64)
    validate_submission(frame, ids, path)
    return write_atomic(path, lambda p: frame.to_csv(p, index=False))
