"""LightGBM three-way preference model, symmetric in A and B, owning its feature groups.

Like a scikit-learn Pipeline, the estimator is features + booster: `fit(frame, y, groups)` takes the
loader's frame and builds (or, when the frame already carries them, reads) the columns of its feature
groups. Training sees every row twice (as given and with A/B exchanged, label swapped); prediction
averages the row and its exchange, so P(a wins | A, B) = P(b wins | B, A) holds exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from competition.config import finite, require
from competition.errors import InputError
from competition.labels import N_CLASSES, as_probabilities, swap_labels, swap_probabilities
from features.paired import swap_features
from features.registry import FEATURE_GROUPS, FeatureConfig, build_features, categorical_columns, feature_columns, group_of

FAMILY = "lgbm"
BOOSTER_FILE = "booster.txt"
META_FILE = "estimator.json"
META_VERSION = 2


@dataclass(frozen=True)
class LGBMConfig:
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 10.0
    max_rounds: int = 3000
    early_stopping_rounds: int = 100
    # Early stopping watches prompts held out of the training part, never the fold being scored.
    early_stopping_share: float = 0.15
    swap_augment: bool = True
    swap_average: bool = True
    num_threads: int = 2

    def __post_init__(self) -> None:
        require(finite(self.learning_rate) and 0 < self.learning_rate <= 1, "learning_rate", "must be in (0, 1]")
        require(2 <= self.num_leaves <= 131072, "num_leaves", "must be between 2 and 131072")
        require(self.min_data_in_leaf >= 1, "min_data_in_leaf", "must be at least 1")
        require(finite(self.feature_fraction) and 0 < self.feature_fraction <= 1, "feature_fraction", "must be in (0, 1]")
        require(finite(self.bagging_fraction) and 0 < self.bagging_fraction <= 1, "bagging_fraction", "must be in (0, 1]")
        require(finite(self.lambda_l2) and self.lambda_l2 >= 0, "lambda_l2", "must be >= 0")
        require(1 <= self.max_rounds <= 1_000_000, "max_rounds", "must be between 1 and 1000000")
        require(self.early_stopping_rounds >= 1, "early_stopping_rounds", "must be at least 1")
        require(
            finite(self.early_stopping_share) and 0 <= self.early_stopping_share < 1, "early_stopping_share", "must be in [0, 1)"
        )
        require(1 <= self.num_threads <= 1024, "num_threads", "must be at least 1")


def _with_swaps(X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.concat([X, swap_features(X)], ignore_index=True), np.concatenate([y, swap_labels(y)])


class LGBMPreference:
    """`fit(frame, y, groups)` returns self, `predict_proba(frame)` gives (n, 3); `save`/`load` a folder."""

    def __init__(self, config: LGBMConfig | None = None, features: FeatureConfig | None = None, seed: int = 42):
        self.config = config or LGBMConfig()
        self.features = features or FeatureConfig()
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

    def feature_table(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature columns for `frame`: taken from the frame when it carries them, else built."""
        groups = tuple(dict.fromkeys(group_of(c) for c in self.columns_)) if hasattr(self, "columns_") else self.features.groups
        present = feature_columns(frame.columns, groups)
        table = frame[present] if present is not None else build_features(frame, groups, self.features.cache_dir)
        return table[self.columns_] if hasattr(self, "columns_") else table

    def _dataset(self, X: pd.DataFrame, y: np.ndarray) -> lgb.Dataset:
        if self.config.swap_augment:
            X, y = _with_swaps(X, y)
        return lgb.Dataset(X, y, categorical_feature=categorical_columns(list(X.columns)) or "auto", free_raw_data=False)

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> LGBMPreference:
        """Finds the number of rounds on held-out prompts, then refits on every row with that many."""
        for attr in ("columns_", "booster_"):
            self.__dict__.pop(attr, None)
        X = self.feature_table(frame)
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
        self.fit_facts_ = {"rounds": rounds}
        self.booster_ = lgb.train(self._params(), self._dataset(X, y), rounds)
        return self

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict(X[self.columns_])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        X = self.feature_table(frame)
        probs = self._raw(X)
        if self.config.swap_average:
            probs = (probs + swap_probabilities(self._raw(swap_features(X)))) / 2
        return as_probabilities(probs)

    def feature_importance(self) -> pd.Series:
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.columns_).sort_values(ascending=False)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(directory / BOOSTER_FILE))
        meta = {
            "family": FAMILY,
            "version": META_VERSION,
            "config": asdict(self.config),
            "features": asdict(self.features),
            "seed": self.seed,
            "columns": self.columns_,
            "n_rounds": self.n_rounds_,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LGBMPreference:
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
            if meta.get("family") != FAMILY or meta.get("version") != META_VERSION:
                raise InputError(f"not a LightGBM model of format {META_VERSION} (found {meta.get('family')!r})", directory)
            features = meta["features"]
            unknown = {group_of(c) for c in meta["columns"]} - set(FEATURE_GROUPS)
            if unknown:
                raise InputError(f"the model uses unknown feature group {sorted(unknown)[0]!r}", directory)
            booster_text = (directory / BOOSTER_FILE).read_text(encoding="utf-8")
            if "end of trees" not in booster_text:  # LightGBM crashes the process on a truncated model file
                raise InputError(f"{BOOSTER_FILE} is incomplete (truncated?)", directory)
            model = cls(
                LGBMConfig(**meta["config"]), FeatureConfig(tuple(features["groups"]), features["cache_dir"]), meta["seed"]
            )
            model.columns_, model.n_rounds_ = list(meta["columns"]), int(meta["n_rounds"])
            model.booster_ = lgb.Booster(model_str=booster_text)
        except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as err:
            raise InputError(f"unreadable LightGBM model ({type(err).__name__})", directory) from None
        return model
