"""The training stages `cv`, `fit`, `predict` and the main job `run`, as importable functions over one config.

The CLI and the tests call these same functions. Each stage writes one unit (competition/rundir.py):
`cv` the run directory's files, `fit` its `model/` folder, `predict` a validated submission file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import save_config
from competition.crossfit import CrossFitResult, cross_fit, write_cross_fit
from competition.errors import InputError
from competition.folds import fold_table, prompt_groups
from competition.rundir import MANIFEST_FILE, check_outputs, staged_unit
from competition.settings import CVConfig, DataConfig, RunLocation, submission_file
from competition.submission import write_submission
from data.loader import append_extra, load_arena_csv
from features.registry import FeatureConfig, attach_features, attach_features_alone
from models.distill import teacher_recipe
from models.lgbm import LGBMConfig, LGBMPreference
from models.registry import MODEL_KIND, load_model

MODEL_DIR = "model"


@dataclass(frozen=True)
class SpineConfig(RunLocation):
    name: str = "lgbm_base"
    submissions_dir: str = "submissions"
    submission: str = ""  # predict/run: the submission CSV; empty: submissions_dir/<name>.csv
    data: DataConfig = field(default_factory=DataConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    lgbm: LGBMConfig = field(default_factory=LGBMConfig)

    @property
    def submission_path(self) -> Path:
        return submission_file(self.submission, self.submissions_dir, self.name)

    def inputs(self) -> list[str | None]:
        return [self.data.train, self.data.test, self.data.extra, self.lgbm.teacher, self.features.table_dir]

    def side_outputs(self) -> list[str | None]:
        """Folders every training stage may write besides its run: fold tables and the feature cache."""
        return [self.cv.fold_dir, self.features.cache_dir]


def load_train(data: DataConfig) -> pd.DataFrame:
    """The training rows (extra rows appended without duplicates), each with its prompt group."""
    frame = load_arena_csv(data.train, require_labels=True, max_rows=data.max_rows)
    if data.extra:
        frame = append_extra(frame, load_arena_csv(data.extra, require_labels=True, max_rows=data.max_rows))
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def load_test(path: str | Path | None) -> pd.DataFrame | None:
    """The whole test file (never cut by max_rows: its predictions become submissions), with prompt groups."""
    if not path:
        return None
    frame = load_arena_csv(path, require_labels=False)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def train_folds(train: pd.DataFrame, cv: CVConfig) -> np.ndarray:
    """The fold of every training row, from the fold table (written once, read by every stage)."""
    table = fold_table(train["id"], train["group"], train["label"].to_numpy(), cv.folds, cv.seed, cv.fold_dir)
    return table["fold"].to_numpy()


def attached_groups(cfg: SpineConfig) -> tuple[str, ...]:
    """The computed groups to add to the training frame once: the model's, and its teacher's (refitted per fold)."""
    groups = cfg.features.groups
    if cfg.lgbm.teacher:
        _, teacher_features = teacher_recipe(cfg.lgbm.teacher, LGBMConfig, FeatureConfig)
        groups = tuple(dict.fromkeys(groups + teacher_features.groups))
    return groups


def training_features(train: pd.DataFrame, groups: tuple[str, ...], features: FeatureConfig) -> pd.DataFrame:
    """`train` with its computed feature columns: read from a table built by `features` when one is set, else
    computed here (the "alone" view is always computed: a table holds the whole-file view only)."""
    if not features.table_dir:
        return attach_features(train, groups, features.cache_dir)
    from features.parts import read_parts
    from features.registry import computed

    table = read_parts(features.table_dir, train, computed(groups))
    return pd.concat([train.drop(columns=[c for c in train.columns if c in table.columns]), table], axis=1)


@dataclass
class CVRun:
    result: CrossFitResult
    importance: pd.Series
    run_dir: Path
    seconds: float


def run_cv(cfg: SpineConfig, write: bool = True) -> CVRun:
    """Grouped K-fold through the cross-fit loop: OOF predictions, per-fold scores, fold-averaged test predictions."""
    start = time.perf_counter()
    if write:
        check_outputs(cfg.side_outputs(), cfg.inputs(), cfg.run_dir, "cv")
    train = load_train(cfg.data)
    test = load_test(cfg.data.test)
    folds = train_folds(train, cfg.cv)
    groups = attached_groups(cfg)
    frame = training_features(train, groups, cfg.features)
    alone = attach_features_alone(train, groups, cfg.features.cache_dir)
    test_frame = None if test is None else attach_features(test, cfg.features.groups, cfg.features.cache_dir)
    result = cross_fit(
        lambda fold: LGBMPreference(cfg.lgbm, cfg.features, seed=cfg.cv.seed + fold),
        frame,
        train["label"].to_numpy(),
        folds,
        train["group"].to_numpy(),
        test_frame,
        inspect=lambda fold, model: model.feature_importance(),
        views={"alone": alone},
        description="cv folds",
    )
    importance = pd.concat(list(result.extras.values()), axis=1).mean(axis=1).sort_values(ascending=False)
    if write:
        with staged_unit(cfg.run_dir, "cv", {"rows": len(train)}) as staging:
            save_config(cfg, staging / "config.toml")
            write_cross_fit(staging, result)
            importance.rename("gain").to_csv(staging / "importance.csv")
    return CVRun(result, importance, cfg.run_dir, time.perf_counter() - start)


def fit(cfg: SpineConfig) -> Path:
    """Trains on every training row and saves the model (with the config that built it) as one unit."""
    model_dir = cfg.run_dir / MODEL_DIR
    check_outputs([cfg.features.cache_dir], cfg.inputs(), model_dir, MODEL_KIND)
    train = load_train(cfg.data)
    frame = training_features(train, cfg.features.groups, cfg.features) if cfg.features.table_dir else train
    model = LGBMPreference(cfg.lgbm, cfg.features, seed=cfg.cv.seed).fit(
        frame, train["label"].to_numpy(), train["group"].to_numpy()
    )
    with staged_unit(model_dir, MODEL_KIND, {"rows": len(train)}) as staging:
        model.save(staging)
        save_config(cfg, staging / "config.toml")
    return model_dir


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run directory holding one in `model/`."""
    path = Path(path)
    if (path / MANIFEST_FILE).exists() and (path / "estimator.json").exists():
        return path
    if (path / MODEL_DIR).is_dir():
        return path / MODEL_DIR
    raise InputError("no fitted model here (run `fit` first)", path)


def predict(model_dir: str | Path, test_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) for a test file from any saved model family (LightGBM rebuilds its own features)."""
    model = load_model(resolve_model_dir(model_dir))
    test = load_test(test_path)
    if test is None:
        raise InputError("predict needs a test file (--test)")
    return test["id"].to_numpy(), model.predict_proba(test)


def predict_and_submit(cfg: SpineConfig, model_dir: str | Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """(ids, probabilities, submission path): `model_dir`'s predictions of the test file, validated and written."""
    path = cfg.submission_path
    check_outputs([path], [cfg.data.test, model_dir])
    ids, probs = predict(model_dir, cfg.data.test)
    return ids, probs, write_submission(path, ids, probs)


@dataclass
class MainJob:
    cv: CVRun
    model_dir: Path
    ids: np.ndarray
    probs: np.ndarray
    submission: Path


def run_main_job(cfg: SpineConfig) -> MainJob:
    """The main job: cv on the training file, fit on all of it, predict the test file."""
    check_outputs([cfg.submission_path, *cfg.side_outputs()], cfg.inputs(), cfg.run_dir, "cv")
    check_outputs([], cfg.inputs(), cfg.run_dir / MODEL_DIR, "model")
    run = run_cv(cfg)
    model_dir = fit(cfg)
    ids, probs, path = predict_and_submit(cfg, model_dir)
    return MainJob(run, model_dir, ids, probs, path)
