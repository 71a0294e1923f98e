"""The one face every model family shows, so the cross-fit loop, `predict` and the blender need not care.

`fit(frame, y, groups) -> self` takes the loader's frame (texts as turn lists, optional model names),
class ids (0 = a, 1 = b, 2 = tie) and the prompt group of each row; `predict_proba(frame)` returns (n, 3)
float64 in the order a, b, tie; `save(directory)` writes the fitted state into a folder and the
class method `load(directory)` reads it back. A family is registered by name in `models/registry.py`.

Optional attributes the loop reads when present: `fit_facts_` (a dict of numbers worth reporting per
fold, e.g. boosting rounds or optimizer steps) and `stopped_` (True when training stopped early on
purpose and must resume later, e.g. a time-boxed transformer fold). Optional method: `release()`, called
once a fold's model is saved and scored, frees what the model holds (a GPU model's memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd


@runtime_checkable
class PreferenceEstimator(Protocol):
    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> Self: ...

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...

    def save(self, directory: str | Path) -> object: ...

    @classmethod
    def load(cls, directory: str | Path) -> Self: ...
