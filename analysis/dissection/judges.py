"""Judges: what a dissection is fitted to. The data's labels are one judge; another judge's labels for the same
pairs (a CSV of id + the three winner columns, e.g. human votes beside an LLM judge's) are another; any run's
out-of-fold predictions are another ("what has the model learned?"), read as the probability that A beats B
given that one of them wins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import CLASS_A, CLASS_B, CLASS_TIE, LABEL_COLUMNS
from competition.runs import run_predictions

TIES = ("drop", "half")


def label_targets(labels: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """(target in [0, 1], weight) per row: A win 1, B win 0; a tie dropped (weight 0) or 1/2."""
    labels = np.asarray(labels)
    target = np.where(labels == CLASS_A, 1.0, np.where(labels == CLASS_B, 0.0, 0.5))
    weight = np.where(labels == CLASS_TIE, 0.0 if ties == "drop" else 1.0, 1.0)
    return target, weight


def run_targets(run_dir: str | Path, ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(p(a) / (p(a) + p(b)), covered) for `ids` from a run's oof.parquet; rows the run did not score get weight 0."""
    frame = run_predictions(run_dir).set_index("id")
    known = ids.astype(str).isin(frame.index).to_numpy()
    if not known.any():
        raise InputError("its out-of-fold rows share no id with the training file", run_dir)
    probs = frame.reindex(ids.astype(str))[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)
    a, b = probs[:, CLASS_A], probs[:, CLASS_B]
    target = np.where(known, a / np.where(known, a + b, 1.0), 0.5)
    return np.clip(target, 0.0, 1.0), known.astype(float)


def csv_targets(path: str | Path, ids: pd.Series, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """(target, weight) from another judge's labels: a CSV of id + winner_model_a/b/tie; pairs it does not
    label get weight 0, and it must label at least one pair of the training file."""
    from data.loader import labels_from_columns, read_csv_checked

    path = Path(path)
    frame = read_csv_checked(path)
    missing = [c for c in ("id", *LABEL_COLUMNS) if c not in frame.columns]
    if missing:
        raise InputError("a judge's label file needs id and the three winner columns", path, column=missing[0])
    labels = pd.Series(labels_from_columns(frame, path), index=frame["id"].astype(str))
    if labels.index.duplicated().any():
        raise InputError(f"column 'id': pair {labels.index[labels.index.duplicated()][0]!r} is labelled twice", path)
    known = ids.astype(str).isin(labels.index).to_numpy()
    if not known.any():
        raise InputError("labels no pair of the training file (ids differ)", path)
    target, weight = label_targets(labels.reindex(ids.astype(str)).fillna(CLASS_TIE).to_numpy().astype(int), ties)
    return target, weight * known


def judge_targets(source: str | Path, ids: pd.Series, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """A run directory (its out-of-fold predictions) or a CSV file of another judge's labels."""
    return csv_targets(source, ids, ties) if Path(source).is_file() else run_targets(source, ids)


def what_is_left_out(source: str | Path | None, ties: str) -> str:
    """Which rows a judge leaves out itself, in words: the labels (source None), a label CSV or a run."""
    its_ties = "its ties (--ties drop)" if ties == "drop" else ""
    if source is None:
        return its_ties or "nothing"
    if Path(source).is_file():
        return " and ".join(filter(None, (its_ties, "the pairs it does not label")))
    return "the pairs its out-of-fold file does not score"
