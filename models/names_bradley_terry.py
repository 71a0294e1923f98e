"""The global leaderboard as a preference estimator: Bradley-Terry on the model names alone, no texts.

The baseline a model-aware predictor must beat (the same ranking for every prompt). It shows the estimator
face (competition/estimator.py), so out-of-fold figures come from the one cross-fit loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from data.battles import encode_models
from models.bradley_terry import TIE_MODELS, BradleyTerry, aggregate
from models.registry import META_FILE, read_meta

FAMILY = "names_bradley_terry"
OUTCOME_OF_LABEL = np.array([1.0, 0.0, 0.5])  # a wins, b wins, tie


class NamesBradleyTerry:
    """`fit(frame, y, groups)` on the frame's model_a/model_b; `predict_proba(frame)` → (n, 3). A pair with a model
    never seen in training gets the prior of an even match (the training tie rate, the rest split evenly)."""

    def __init__(self, tie_model: str = "davidson"):
        if tie_model not in TIE_MODELS:
            raise ValueError(f"unknown tie model {tie_model!r} (known: {', '.join(TIE_MODELS)})")
        self.tie_model = tie_model

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> NamesBradleyTerry:
        a, b, self.models_ = encode_models(frame)
        outcome = OUTCOME_OF_LABEL[np.asarray(y, dtype=np.int64)]
        self.model_ = BradleyTerry(len(self.models_), self.tie_model).fit(*aggregate(a, b, outcome))
        self.fit_facts_ = {"models": len(self.models_)}
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        a, b, _ = encode_models(frame, self.models_)
        known = (a >= 0) & (b >= 0)
        tie = self.model_.tie_rate_
        probs = np.tile([(1 - tie) / 2, (1 - tie) / 2, tie], (len(frame), 1))
        probs[known] = self.model_.predict_proba(a[known], b[known])
        return probs

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        m = self.model_
        meta = {
            "family": FAMILY,
            "tie_model": self.tie_model,
            "models": self.models_,
            "ratings": m.ratings_.tolist(),
            "tie_param": m.tie_param_,
            "tie_rate": m.tie_rate_,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> NamesBradleyTerry:
        try:
            meta = read_meta(directory, FAMILY)
            estimator = cls(meta["tie_model"])
            estimator.models_ = list(meta["models"])
            model = BradleyTerry(len(estimator.models_), estimator.tie_model)
            model.ratings_ = np.asarray(meta["ratings"], dtype=np.float64)
            model.tie_param_ = None if meta["tie_param"] is None else float(meta["tie_param"])
            model.tie_rate_, model.coefs_ = float(meta["tie_rate"]), np.zeros(0)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"unreadable {FAMILY} model ({type(err).__name__})", directory) from None
        estimator.model_ = model
        return estimator
