"""The spine's stages as importable functions: the CLI and the tests call these same functions."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import write_atomic
from competition.config import save_config
from competition.errors import InputError
from competition.folds import assign_folds, prompt_groups
from competition.metric import score_report
from competition.predictions import OOF_FILE, TEST_FILE, save_predictions
from competition.progress import progress
from competition.settings import SpineConfig
from data.loader import append_extra, load_arena_csv
from features.registry import build_features
from models.lgbm import LGBMPreference

log = logging.getLogger(__name__)
MODEL_DIR = "model"


@dataclass
class CVResult:
    ids: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    oof: np.ndarray
    fold_scores: pd.DataFrame  # one row per fold: log_loss, accuracy, rows, rounds
    summary: dict[str, float]
    groups: np.ndarray | None = None  # prompt group per row: lets the blender make grouped sub-folds
    test_ids: np.ndarray | None = None
    test_probs: np.ndarray | None = None
    importance: pd.Series | None = None
    seconds: float = 0.0


def load_train(cfg: SpineConfig) -> pd.DataFrame:
    frame = load_arena_csv(cfg.data.train, require_labels=True, max_rows=cfg.data.max_rows)
    if cfg.data.extra:
        frame = append_extra(frame, load_arena_csv(cfg.data.extra, require_labels=True, max_rows=cfg.data.max_rows))
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def load_test(path: str | Path, max_rows: int | None = None) -> pd.DataFrame:
    frame = load_arena_csv(path, require_labels=False, max_rows=max_rows)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def featurize(frame: pd.DataFrame, cfg: SpineConfig) -> pd.DataFrame:
    groups = cfg.features.groups
    if "model_names" in groups and "model_a" not in frame.columns:
        raise InputError("feature group 'model_names' needs model_a/model_b columns; drop it for files without them")
    return build_features(frame, groups, cfg.features.cache_dir)


def _test_frame(cfg: SpineConfig) -> pd.DataFrame | None:
    if not cfg.data.test:
        return None
    if not Path(cfg.data.test).exists():
        raise InputError("test file not found", cfg.data.test)
    return load_test(cfg.data.test, cfg.data.max_rows)


def cross_validate(
    X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, groups: np.ndarray, cfg: SpineConfig, X_test: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame, pd.Series]:
    """The fold loop over a ready feature table: (oof, fold-mean test probs, per-fold scores, mean gain)."""
    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(X), 3))
    test_probs = np.zeros((len(X_test), 3)) if X_test is not None else None
    rows, importance = [], []
    for fold in progress(range(n_folds), "cv folds"):
        fit_rows, valid_rows = folds != fold, folds == fold
        model = LGBMPreference(cfg.lgbm, seed=cfg.cv.seed + fold).fit(X[fit_rows], y[fit_rows], groups[fit_rows])
        oof[valid_rows] = model.predict_proba(X[valid_rows])
        if X_test is not None:
            test_probs += model.predict_proba(X_test) / n_folds
        importance.append(model.feature_importance())
        rows.append(
            {
                "fold": fold,
                "rows": int(valid_rows.sum()),
                "rounds": model.n_rounds_,
                **score_report(y[valid_rows], oof[valid_rows]),
            }
        )
    return oof, test_probs, pd.DataFrame(rows), pd.concat(importance, axis=1).mean(axis=1).sort_values(ascending=False)


def run_cv(cfg: SpineConfig, write: bool = True) -> CVResult:
    """Grouped K-fold: out-of-fold predictions, per-fold scores, and fold-averaged test predictions."""
    start = time.perf_counter()
    train = load_train(cfg)
    y = train["label"].to_numpy()
    folds = assign_folds(y, train["group"], cfg.cv.folds, cfg.cv.seed)
    X = featurize(train, cfg)
    test = _test_frame(cfg)
    X_test = featurize(test, cfg) if test is not None else None
    oof, test_probs, fold_scores, importance = cross_validate(X, y, folds, train["group"].to_numpy(), cfg, X_test)
    summary = score_report(y, oof)
    summary.update(fold_mean=float(fold_scores["log_loss"].mean()), fold_std=float(fold_scores["log_loss"].std(ddof=1)))
    result = CVResult(
        ids=train["id"].to_numpy(),
        y=y,
        folds=folds,
        oof=oof,
        fold_scores=fold_scores,
        summary=summary,
        groups=train["group"].to_numpy(),
        test_ids=None if test is None else test["id"].to_numpy(),
        test_probs=test_probs,
        importance=importance,
        seconds=time.perf_counter() - start,
    )
    if write:
        write_cv_outputs(cfg, result)
    return result


def write_cv_outputs(cfg: SpineConfig, result: CVResult) -> Path:
    out = cfg.run_dir
    save_config(cfg, out / "config.toml")
    groups = {} if result.groups is None else {"group": result.groups}
    save_predictions(out / OOF_FILE, result.ids, result.oof, fold=result.folds, label=result.y, **groups)
    if result.test_probs is not None:
        save_predictions(out / TEST_FILE, result.test_ids, result.test_probs)
    write_atomic(out / "cv_folds.csv", lambda p: result.fold_scores.to_csv(p, index=False))
    write_atomic(out / "cv_summary.json", lambda p: pd.Series(result.summary).to_json(p, indent=1))
    if result.importance is not None:
        write_atomic(out / "importance.csv", lambda p: result.importance.rename("gain").to_csv(p))
    return out


def fit(cfg: SpineConfig) -> Path:
    """Trains on every training row and saves the model with the config that built it."""
    train = load_train(cfg)
    model = LGBMPreference(cfg.lgbm, seed=cfg.cv.seed).fit(
        featurize(train, cfg), train["label"].to_numpy(), train["group"].to_numpy()
    )
    model_dir = cfg.run_dir / MODEL_DIR
    model.save(model_dir)
    save_config(cfg, cfg.run_dir / "config.toml")
    return model_dir


def predict(cfg: SpineConfig, model_dir: str | Path, test_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) for a test file, with the feature groups the model was trained on."""
    model_dir = Path(model_dir)
    if not (model_dir / "lgbm.json").exists():
        nested = model_dir / MODEL_DIR
        if not (nested / "lgbm.json").exists():
            raise InputError("no fitted model here (run `fit` first)", model_dir)
        model_dir = nested
    model = LGBMPreference.load(model_dir)
    groups = tuple(dict.fromkeys(c.split("__", 1)[0] for c in model.columns_))
    test = load_test(test_path, cfg.data.max_rows)
    X = featurize(test, replace(cfg, features=replace(cfg.features, groups=groups)))
    return test["id"].to_numpy(), model.predict_proba(X)
