"""Per-fold fine-tuning on the spine's folds, writing the same oof/test files as the LightGBM runs.

Layout of a run directory (e.g. runs/transformer/minilm):
  config.toml                 resolved config
  fold{k}/checkpoint/         resumable training state (a killed fold continues from here)
  fold{k}/model/              trainable weights + settings (TransformerPreference.load)
  fold{k}/oof.parquet         the fold's scored rows; a fold with this file is done and is skipped
  fold{k}/test.parquet        the fold model's test predictions
  fold{k}/fold_run.json       the fold's training facts (rows, steps, seconds), for reports of later runs
  oof.parquet, test.parquet   every finished fold in the directory combined (test: mean over folds)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import write_atomic, write_text_atomic
from competition.config import save_config
from competition.errors import InputError
from competition.folds import assign_folds, prompt_groups
from competition.labels import LABEL_COLUMNS
from competition.metric import score_report
from competition.predictions import OOF_FILE, TEST_FILE, load_predictions, save_predictions
from data.loader import append_extra, load_arena_csv
from models.transformer.estimator import TransformerPreference
from models.transformer.settings import TransformerRunConfig

log = logging.getLogger(__name__)

FOLD_FACTS_FILE = "fold_run.json"


@dataclass
class TransformerCVResult:
    run_dir: Path
    fold_scores: pd.DataFrame  # folds trained or found in this run dir
    summary: dict[str, float]  # over all out-of-fold rows in the run dir


def load_train(cfg: TransformerRunConfig) -> pd.DataFrame:
    """The spine's training rows (extra appended the same way), so folds match the LightGBM runs."""
    frame = load_arena_csv(cfg.data.train, require_labels=True, max_rows=cfg.data.max_rows)
    if cfg.data.extra:
        frame = append_extra(frame, load_arena_csv(cfg.data.extra, require_labels=True, max_rows=cfg.data.max_rows))
    return frame


def load_test(cfg: TransformerRunConfig) -> pd.DataFrame | None:
    if not cfg.data.test:
        return None
    if not Path(cfg.data.test).exists():
        raise InputError("test file not found", cfg.data.test)
    return load_arena_csv(cfg.data.test, max_rows=cfg.data.max_rows)


def subsample(rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def fold_directory(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold{fold}"


def selected_folds(cfg: TransformerRunConfig) -> list[int]:
    folds = list(cfg.train.only_folds) or list(range(cfg.cv.folds))
    bad = [f for f in folds if not 0 <= f < cfg.cv.folds]
    if bad:
        raise InputError(f"train.only_folds has fold {bad[0]}, but there are {cfg.cv.folds} folds (0..{cfg.cv.folds - 1})")
    return folds


def train_fold(
    cfg: TransformerRunConfig, train: pd.DataFrame, folds: np.ndarray, fold: int, test: pd.DataFrame | None
) -> dict | None:
    """Fits on the other folds, scores this fold (and the test file); the fold's facts, None if stopped early."""
    start = time.perf_counter()
    fold_dir = fold_directory(cfg.run_dir, fold)
    fit_rows = subsample(np.flatnonzero(folds != fold), cfg.train.max_train_rows, cfg.train.seed + fold)
    valid_rows = subsample(np.flatnonzero(folds == fold), cfg.train.max_valid_rows, cfg.train.seed + fold)
    part, y = train.iloc[fit_rows], train["label"].to_numpy()
    model = TransformerPreference(cfg.model, cfg.train, checkpoint_dir=fold_dir / "checkpoint")
    model.fit(part, y[fit_rows])
    if model.result_.stopped:
        log.warning(
            "fold %d stopped at step %d of %d; run again to resume", fold, model.result_.steps_done, model.result_.total_steps
        )
        return None
    model.save(fold_dir / "model")
    probs = model.predict_proba(train.iloc[valid_rows])
    if test is not None:
        save_predictions(fold_dir / TEST_FILE, test["id"], model.predict_proba(test))
    facts = {
        "fold": fold,
        "train_rows": len(fit_rows),
        "rows": len(valid_rows),
        "steps": model.result_.steps_done,
        "seconds": time.perf_counter() - start,
    }
    write_text_atomic(fold_dir / FOLD_FACTS_FILE, json.dumps(facts, indent=1))
    # written last: its presence marks the fold as done
    save_predictions(
        fold_dir / OOF_FILE,
        train["id"].iloc[valid_rows],
        probs,
        fold=folds[valid_rows],
        label=y[valid_rows],
        group=prompt_groups(train.iloc[valid_rows]).to_numpy(),
    )
    return facts


def combine_folds(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Every finished fold's oof rows, and the mean of their test predictions (when all have them)."""
    fold_dirs = sorted(d for d in run_dir.glob("fold*") if (d / OOF_FILE).exists())
    if not fold_dirs:
        raise InputError("no finished fold in this run directory (a stopped fold resumes when run again)", run_dir)
    oof = pd.concat([load_predictions(d / OOF_FILE) for d in fold_dirs], ignore_index=True)
    tests = [load_predictions(d / TEST_FILE) for d in fold_dirs if (d / TEST_FILE).exists()]
    if len(tests) != len(fold_dirs):
        return oof, None
    ids = tests[0]["id"]
    mean = np.mean([t.set_index("id").loc[ids, list(LABEL_COLUMNS)].to_numpy() for t in tests], axis=0)
    return oof, pd.DataFrame({"id": ids, **dict(zip(LABEL_COLUMNS, mean.T, strict=True))})


def fold_facts(run_dir: Path, fold: int, rows: int) -> dict:
    """What a fold trained in an earlier invocation recorded; only its row count when it predates the file."""
    path = fold_directory(run_dir, fold) / FOLD_FACTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"fold": fold, "rows": rows}


def run_transformer_cv(cfg: TransformerRunConfig) -> TransformerCVResult:
    """Trains the selected folds (skipping finished ones, resuming a killed one) and writes the combined files."""
    train = load_train(cfg)
    y = train["label"].to_numpy()
    folds = assign_folds(y, prompt_groups(train), cfg.cv.folds, cfg.cv.seed)
    test = load_test(cfg)
    save_config(cfg, cfg.run_dir / "config.toml")
    for fold in selected_folds(cfg):
        if (fold_directory(cfg.run_dir, fold) / OOF_FILE).exists():
            log.info("fold %d already finished in %s: skipped", fold, cfg.run_dir)
            continue
        if train_fold(cfg, train, folds, fold, test) is None:
            break
    oof, test_probs = combine_folds(cfg.run_dir)
    # Folds written before the group column existed leave gaps; a partial column would mislead the blender.
    groups = {"group": oof["group"]} if "group" in oof.columns and oof["group"].notna().all() else {}
    save_predictions(
        cfg.run_dir / OOF_FILE, oof["id"], oof[list(LABEL_COLUMNS)].to_numpy(), fold=oof["fold"], label=oof["label"], **groups
    )
    if test_probs is not None:
        save_predictions(cfg.run_dir / TEST_FILE, test_probs["id"], test_probs[list(LABEL_COLUMNS)].to_numpy())
    scores = []
    for fold, part in oof.groupby("fold"):
        facts = fold_facts(cfg.run_dir, int(fold), len(part))
        scores.append({**facts, **score_report(part["label"].to_numpy(), part[list(LABEL_COLUMNS)].to_numpy())})
    fold_scores = pd.DataFrame(scores)
    summary = score_report(oof["label"].to_numpy(), oof[list(LABEL_COLUMNS)].to_numpy()) | {"rows": float(len(oof))}
    write_atomic(cfg.run_dir / "cv_folds.csv", lambda p: fold_scores.to_csv(p, index=False))
    write_text_atomic(cfg.run_dir / "cv_summary.json", json.dumps(summary, indent=1))
    return TransformerCVResult(cfg.run_dir, fold_scores, summary)
