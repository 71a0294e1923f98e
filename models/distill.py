"""Distillation targets: a teacher run's recipe, and soft labels mixed with hard ones as LightGBM rows.

The student of fold k must never train on targets that carry fold k's labels, so the teacher is not read
from a teacher run's out-of-fold file (its fold-j model saw fold k). Instead the teacher's *recipe* (the
LightGBM and feature settings in the teacher run's config.toml) is refitted inside the student's training
rows on prompt-grouped inner folds (models/lgbm.py), giving soft targets for every training row from a
teacher that never saw that row's prompt, nor any of the student's validation prompts.

Soft targets enter LightGBM's multiclass objective as weighted rows: row i appears once per class k with
weight q_ik = (1 − w)·[y_i = k] + w·p_teacher_ik, so the weighted log loss equals the cross-entropy to q.
With w = 0 every row appears once with its hard label and weight 1: the hard-label objective exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import load_config
from competition.errors import InputError
from competition.labels import one_hot
from competition.rundir import RunKind
from competition.runs import run_config


def teacher_recipe(run_dir: str | Path, lgbm_config: type, feature_config: type) -> tuple[object, object]:
    """(LGBMConfig, FeatureConfig) of a LightGBM cv run, read from its config.toml (the manifest is checked)."""
    data = run_config(run_dir, (RunKind.CV,))
    if data.get("family", "lgbm") != "lgbm" or "lgbm" not in data or "features" not in data:
        raise InputError("the teacher must be a LightGBM cv run (its config has no [lgbm]/[features])", run_dir)
    lgbm = dict(data["lgbm"]) | {"teacher": ""}  # a teacher is refitted as a plain model, never distilled itself
    return load_config(lgbm_config, None, [lgbm]), load_config(feature_config, None, [dict(data["features"])])


def soft_targets(y: np.ndarray, teacher_probs: np.ndarray | None, weight: float) -> np.ndarray:
    """Per-row target distribution: one-hot labels mixed with the teacher's probabilities."""
    hard = one_hot(np.asarray(y))
    return hard if teacher_probs is None or weight == 0 else (1 - weight) * hard + weight * np.asarray(teacher_probs)


def expand_rows(X: pd.DataFrame, targets: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(rows, labels, weights): row i once for each class k with q_ik > 0, in row order then class order."""
    row, label = np.nonzero(targets > 0)
    return X.iloc[row].reset_index(drop=True), label.astype(np.int64), targets[row, label]


def weighted_log_loss(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """The objective LightGBM minimises on expanded rows (summed, not averaged), for tests and checks."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-15, 1)
    return float(-(weights * np.log(p[np.arange(len(labels)), labels])).sum())
