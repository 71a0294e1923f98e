"""Judges: what a dissection is fitted to. The data's labels are one judge; any run's out-of-fold predictions are
another ("what has the model learned?"), read as the probability that A beats B given that one of them wins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import CLASS_A, CLASS_B, CLASS_TIE, LABEL_COLUMNS
from competition.predictions import load_predictions

TIES = ("drop", "half")


def label_targets(labels: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """(target in [0, 1], weight) per row: A win 1, B win 0; a tie dropped (weight 0) or 1/2."""
    labels = np.asarray(labels)
    target = np.where(labels == CLASS_A, 1.0, np.where(labels == CLASS_B, 0.0, 0.5))
    weight = np.where(labels == CLASS_TIE, 0.0 if ties == "drop" else 1.0, 1.0)
    return target, weight


def run_targets(run_dir: str | Path, ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(p(a) / (p(a) + p(b)), covered) for `ids` from a run's oof.parquet; rows the run did not score get weight 0."""
    path = Path(run_dir) / "oof.parquet"
    if not path.is_file():
        raise InputError("no oof.parquet: not a cv or train-transformer run directory", run_dir)
    frame = load_predictions(path).set_index("id")
    known = ids.astype(str).isin(frame.index).to_numpy()
    if not known.any():
        raise InputError("its out-of-fold rows share no id with the training file", run_dir)
    probs = frame.reindex(ids.astype(str))[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)
    a, b = probs[:, CLASS_A], probs[:, CLASS_B]
    target = np.where(known, a / np.where(known, a + b, 1.0), 0.5)
    return np.clip(target, 0.0, 1.0), known.astype(float)
