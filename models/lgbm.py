"""LightGBM three-way preference model, symmetric in A and B, owning its feature groups.

Like a scikit-learn Pipeline, the estimator is features + booster: `fit(frame, y, groups)` takes the
loader's frame and builds (or, when the frame already carries them, reads) the columns of its computed
feature groups, and fits its trained groups (e.g. `author`) nested by prompt (features/trained.py).
Training sees every row twice (as given and with A/B exchanged, label swapped); prediction averages the
row and its exchange, so P(a wins | A, B) = P(b wins | B, A) holds exactly. With a teacher
(`teacher = <run dir>`), it trains on soft targets from that recipe refitted on inner folds (models/distill.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from competition.config import finite, require
from competition.errors import InputError
from competition.folds import inner_fold_predictions, prompt_groups
from competition.labels import N_CLASSES, as_probabilities, swap_labels, swap_probabilities
from features.paired import swap_features
from features.registry import (
    FEATURE_GROUPS,
    FeatureConfig,
    as_alone,
    build_features,
    categorical_columns,
    computed,
    feature_columns,
    group_of,
    trained,
)
from features.trained import fit_group, load_state, nested_features, save_state
from models.distill import expand_rows, soft_targets, teacher_recipe
from models.registry import META_FILE, read_meta

FAMILY = "lgbm"
BOOSTER_FILE = "booster.txt"
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
    # prompt-grouped inner folds that fit trained feature groups and the teacher without leakage
    inner_folds: int = 5
    teacher: str = ""  # a LightGBM cv run whose recipe gives soft targets (e.g. the names-aware model)
    teacher_weight: float = 0.5  # share of the teacher's probabilities in each training target
    # Share of training prompts whose computed features are rebuilt as if each row were alone in its file, so
    # the model also learns what cross-answer groups (consensus) look like on files with one pair per prompt.
    alone_share: float = 0.0

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
        require(2 <= self.inner_folds <= 20, "inner_folds", "must be between 2 and 20")
        require(finite(self.teacher_weight) and 0 <= self.teacher_weight <= 1, "teacher_weight", "must be in [0, 1]")
        require(finite(self.alone_share) and 0 <= self.alone_share <= 1, "alone_share", "must be in [0, 1]")


@dataclass(frozen=True)
class LGBMSettings:
    """The LightGBM family's config sections: `[features]` and `[lgbm]`."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    lgbm: LGBMConfig = field(default_factory=LGBMConfig)

    def family_inputs(self) -> list[str | None]:
        return [self.lgbm.teacher, self.features.table_dir]

    def family_side_outputs(self) -> list[str | None]:
        return [self.features.cache_dir]


def _with_columns(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """`frame` carrying `table`'s columns (replacing any of the same name)."""
    kept = frame.drop(columns=[c for c in table.columns if c in frame.columns])
    return pd.concat([kept, table.set_axis(frame.index)], axis=1)


def _with_swaps(X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.concat([X, swap_features(X)], ignore_index=True), np.concatenate([y, swap_labels(y)])


class LGBMPreference:
    """`fit(frame, y, groups)` returns self, `predict_proba(frame)` gives (n, 3); `save`/`load` a folder."""

    def __init__(self, config: LGBMConfig | None = None, features: FeatureConfig | None = None, seed: int = 42):
        self.config = config or LGBMConfig()
        self.features = features or FeatureConfig()
        self.seed = seed

    @classmethod
    def from_settings(cls, settings: LGBMSettings, seed: int) -> LGBMPreference:
        return cls(settings.lgbm, settings.features, seed=seed)

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

    def _groups(self) -> tuple[str, ...]:
        if hasattr(self, "columns_"):
            return tuple(dict.fromkeys(group_of(c) for c in self.columns_))
        return self.features.groups

    def computed_table(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns of the computed groups: taken from the frame when it carries them, else built."""
        groups = computed(self._groups())
        present = feature_columns(frame.columns, groups)
        return frame[present] if present is not None else build_features(frame, groups, self.features.cache_dir)

    def feature_table(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's columns for rows to predict (trained groups from their copies fitted on all training rows)."""
        table = self.computed_table(frame)
        described = _with_columns(frame, table)
        parts = [table, *(self.trained_[name].transform(described) for name in trained(self._groups()))]
        table = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        unknown = [c for c in self.columns_ if c not in table.columns]
        if unknown:
            raise InputError(
                f"the model uses feature {unknown[0]!r}, which this version's feature registry does not compute "
                "(a model saved by another version?)",
                getattr(self, "loaded_from_", None),
            )
        return table[self.columns_]

    def _alone_mixed(self, frame: pd.DataFrame, table: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
        """`table` with the rows of a seeded `alone_share` of prompts recomputed as if alone in their file."""
        prompts = np.unique(groups)
        rng = np.random.default_rng(self.seed)
        chosen = np.isin(groups, rng.choice(prompts, size=int(round(self.config.alone_share * len(prompts))), replace=False))
        if not chosen.any():
            return table
        alone = build_features(as_alone(frame.iloc[np.flatnonzero(chosen)]), computed(self.features.groups), None)
        table = table.copy()
        table.iloc[np.flatnonzero(chosen)] = alone[table.columns].to_numpy()
        return table

    def _training_table(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
        """Columns for the training rows: trained groups nested, so no row's columns saw its own prompt."""
        table = self.computed_table(frame)
        # trained groups read the whole-file computed columns (answer_score scores answers from them)
        described = _with_columns(frame, table)
        if self.config.alone_share > 0:
            table = self._alone_mixed(frame, table, groups)
        parts, self.trained_ = [table], {}
        for name in trained(self.features.groups):
            parts.append(nested_features(name, described, y, groups, self.config.inner_folds, self.seed))
            self.trained_[name] = fit_group(name, described, y)
        return pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]

    def _teacher_probabilities(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
        if not self.config.teacher or self.config.teacher_weight == 0:
            return None
        return teacher_probabilities(
            self.config.teacher, frame, y, groups, self.config.inner_folds, self.seed, self.config.num_threads
        )[0]

    def _dataset(self, X: pd.DataFrame, y: np.ndarray, targets: np.ndarray | None = None) -> lgb.Dataset:
        if self.config.swap_augment:
            if targets is not None:
                targets = np.concatenate([targets, swap_probabilities(targets)])
            X, y = _with_swaps(X, y)
        categorical = categorical_columns(list(X.columns)) or "auto"
        if targets is None:
            return lgb.Dataset(X, y, categorical_feature=categorical, free_raw_data=False)
        rows, labels, weights = expand_rows(X, targets)
        return lgb.Dataset(rows, labels, weight=weights, categorical_feature=categorical, free_raw_data=False)

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> LGBMPreference:
        """Finds the number of rounds on held-out prompts, then refits on every row with that many."""
        for attr in ("columns_", "booster_", "trained_"):
            self.__dict__.pop(attr, None)
        y = np.asarray(y, dtype=np.int64)
        if groups is None:
            groups = prompt_groups(frame).to_numpy() if "prompt" in frame.columns else np.arange(len(frame))
        groups = np.asarray(groups)
        if self.config.early_stopping_share > 0 and len(np.unique(groups)) < 2:
            raise InputError(
                "LightGBM's training rows come from one prompt: it needs at least two (some are held out to choose "
                "the number of rounds; lgbm.early_stopping_share = 0 turns that off)"
            )
        X = self._training_table(frame, y, groups)
        teacher = self._teacher_probabilities(frame, y, groups)
        targets = None if teacher is None else soft_targets(y, teacher, self.config.teacher_weight)
        self.columns_ = list(X.columns)
        rounds = self.config.max_rounds
        if self.config.early_stopping_share > 0:
            split = GroupShuffleSplit(n_splits=1, test_size=self.config.early_stopping_share, random_state=self.seed)
            fit_idx, stop_idx = next(split.split(X, y, groups))
            # The watched set gets no swap copies: it scores the same symmetric rows the model will see.
            watched = lgb.Dataset(X.iloc[stop_idx], y[stop_idx], reference=None)
            probe = lgb.train(
                self._params(),
                self._dataset(X.iloc[fit_idx], y[fit_idx], None if targets is None else targets[fit_idx]),
                rounds,
                valid_sets=[watched],
                callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
            )
            rounds = max(1, int(round(probe.best_iteration / (1 - self.config.early_stopping_share))))
        self.n_rounds_ = rounds
        self.fit_facts_ = {"rounds": rounds}
        self.booster_ = lgb.train(self._params(), self._dataset(X, y, targets), rounds)
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
        for name, model in self.trained_.items():
            save_state(model, directory / f"trained_{name}.npz")
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
            meta = read_meta(directory, FAMILY, META_VERSION, "LightGBM")
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
            model.trained_ = {name: load_state(name, directory / f"trained_{name}.npz") for name in trained(model._groups())}
            model.booster_ = lgb.Booster(model_str=booster_text)
            model.loaded_from_ = directory
        except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as err:
            raise InputError(f"unreadable LightGBM model ({type(err).__name__})", directory) from None
        return model


def teacher_probabilities(
    run_dir: str | Path,
    frame: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    inner_folds: int,
    seed: int,
    num_threads: int,
    unlabeled: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Soft targets from a LightGBM run's recipe (models/distill.py), for any student family.

    Each row of `frame` is predicted by the recipe refitted on prompt-grouped inner folds without that row's
    prompt; rows of `unlabeled` (pseudo-labels) by the recipe fitted on all of `frame`. Returns
    (probabilities of frame's rows, of unlabeled's rows or None).
    """
    teacher_config, teacher_features = teacher_recipe(run_dir, LGBMConfig, FeatureConfig)
    teacher_config = replace(teacher_config, num_threads=num_threads)

    def fit_predict(fold: int, fit: np.ndarray, held: np.ndarray) -> np.ndarray:
        teacher = LGBMPreference(teacher_config, teacher_features, seed + 1000 + fold)
        return teacher.fit(frame.iloc[fit], y[fit], groups[fit]).predict_proba(frame.iloc[held])

    groups = np.asarray(groups)
    probs = inner_fold_predictions(groups, inner_folds, seed, fit_predict, "the teacher")
    if unlabeled is None or not len(unlabeled):
        return probs, None
    whole = LGBMPreference(teacher_config, teacher_features, seed + 999).fit(frame, y, groups)
    return probs, whole.predict_proba(unlabeled)
