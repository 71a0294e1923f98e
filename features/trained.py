"""Fitting trained feature groups without leakage, and keeping their state without pickle.

A trained group (e.g. `author`) learns from labels. Its columns for a training row must come from a copy
fitted on other prompts only, or the model downstream learns from features that already saw the row's
outcome: `nested_features` fits one copy per prompt-grouped inner fold and fills each inner fold's rows.
Rows to predict (validation, test) get the copy fitted on every training row, which never saw them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.folds import inner_fold_predictions
from features.registry import FEATURE_GROUPS


def fit_group(name: str, frame: pd.DataFrame, y: np.ndarray):
    return FEATURE_GROUPS[name].trainer().fit(frame, np.asarray(y))


def nested_features(name: str, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> pd.DataFrame:
    """The group's columns for every row of `frame`, each row's from a copy fitted without its prompt."""
    y = np.asarray(y)

    def fit_transform(_fold: int, fit: np.ndarray, held: np.ndarray) -> pd.DataFrame:
        return fit_group(name, frame.iloc[fit], y[fit]).transform(frame.iloc[held])

    table = inner_fold_predictions(groups, n_folds, seed, fit_transform, f"feature group {name!r}")
    return table.set_axis(frame.index)


def save_state(model, path: Path) -> None:
    np.savez(path, **model.state())


def load_state(name: str, path: Path):
    with np.load(path, allow_pickle=False) as data:
        return FEATURE_GROUPS[name].trainer.from_state({k: data[k] for k in data.files})
