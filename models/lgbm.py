"""LightGBM three-way preference model over a feature table, symmetric in A and B.

Training sees every row twice (as given and with A/B exchanged, label swapped); prediction averages
the row and its exchange, so P(a wins | A, B) = P(b wins | B, A) holds exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from competition.atomic import write_atomic, write_text_atomic
from competition.labels import N_CLASSES, as_probabilities, swap_labels, swap_probabilities
from competition.settings import LGBMConfig
from features.paired import swap_features
from features.registry import categorical_columns

BOOSTER_FILE = "booster.txt"
META_FILE = "lgbm.json"


def _with_swaps(X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.concat([X, swap_features(X)], ignore_index=True), np.concatenate([y, swap_labels(y)])


class LGBMPreference:
    """Scikit-learn-like estimator: `fit(X, y, groups)` returns self, `predict_proba(X)` gives (n, 3)."""

    def __init__(self, config: LGBMConfig | None = None, seed: int = 42):
        self.config = config or LGBMConfig()
        self.seed = seed

    def _params(self) -> dict:
        c = self.config
        return {
            "objective": "multiclass",
            "num_class": N_CLASSES,
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction,
            "bagging_fraction": c.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": c.lambda_l2,
            "num_threads": c.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "verbose": -1,
        }

    def _dataset(self, X: pd.DataFrame, y: np.ndarray) -> lgb.Dataset:
        if self.config.swap_augment:
            X, y = _with_swaps(X, y)
        return lgb.Dataset(X, y, categorical_feature=categorical_columns(list(X.columns)) or "auto", free_raw_data=False)

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> LGBMPreference:
        """Finds the number of rounds on held-out prompts, then refits on every row with that many."""
        y = np.asarray(y, dtype=np.int64)
        self.columns_ = list(X.columns)
        rounds = self.config.max_rounds
        if self.config.early_stopping_share > 0:
            groups = np.arange(len(X)) if groups is None else np.asarray(groups)
            split = GroupShuffleSplit(n_splits=1, test_size=self.config.early_stopping_share, random_state=self.seed)
            fit_idx, stop_idx = next(split.split(X, y, groups))
            # The watched set gets no swap copies: it scores the same symmetric rows the model will see.
            watched = lgb.Dataset(X.iloc[stop_idx], y[stop_idx], reference=None)
            probe = lgb.train(
                self._params(),
                self._dataset(X.iloc[fit_idx], y[fit_idx]),
                rounds,
                valid_sets=[watched],
                callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
            )
            rounds = max(1, int(round(probe.best_iteration / (1 - self.config.early_stopping_share))))
        self.n_rounds_ = rounds
        self.booster_ = lgb.train(self._params(), self._dataset(X, y), rounds)
        return self

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict(X[self.columns_])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        probs = self._raw(X)
        if self.config.swap_average:
            probs = (probs + swap_probabilities(self._raw(swap_features(X[self.columns_])))) / 2
        return as_probabilities(probs)

    def feature_importance(self) -> pd.Series:
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.columns_).sort_values(ascending=False)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        write_atomic(directory / BOOSTER_FILE, lambda p: self.booster_.save_model(str(p)))
        meta = {"config": asdict(self.config), "seed": self.seed, "columns": self.columns_, "n_rounds": self.n_rounds_}
        write_text_atomic(directory / META_FILE, json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> LGBMPreference:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        model = cls(LGBMConfig(**meta["config"]), meta["seed"])
        model.columns_, model.n_rounds_ = meta["columns"], meta["n_rounds"]
        model.booster_ = lgb.Booster(model_file=str(directory / BOOSTER_FILE))
        return model
