"""The one cross-fit loop: every out-of-fold figure in the project comes from here.

Given an estimator factory, the rows, their labels, prompt groups and fold ids (from the fold table),
it trains one estimator per fold on the other folds' rows only, predicts the fold's rows (and the test
rows), and records per-fold facts. With a `FoldStore` each finished fold is committed to disk as a unit
and skipped when the loop runs again, so a long run resumes fold by fold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.estimator import PreferenceEstimator
from competition.metric import score_report
from competition.predictions import OOF_FILE, TEST_FILE, load_predictions, probabilities_for, save_predictions
from competition.progress import progress
from competition.rundir import MANIFEST_FILE, RunKind, read_manifest, staged_unit

log = logging.getLogger(__name__)

FACTS_FILE = "fold_facts.json"
MODEL_DIR = "model"
FOLD_KEY = "made_from"  # in a fold unit's manifest facts: its `fold_key`


@dataclass
class CrossFitResult:
    ids: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    groups: np.ndarray
    oof: np.ndarray  # (n, 3); rows of folds not scored hold NaN
    scored: np.ndarray  # bool per row: predicted out of fold in this result
    fold_scores: pd.DataFrame  # one row per scored fold: facts and scores
    test_ids: np.ndarray | None = None
    test_probs: np.ndarray | None = None  # mean over the folds' models
    stopped: bool = False  # a fold stopped early on purpose; run again to resume
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)  # whatever `inspect` returned per fold
    view_oof: dict[str, np.ndarray] = field(default_factory=dict)  # out-of-fold predictions of each scoring view

    def summary(self) -> dict[str, float]:
        y, oof = self.y[self.scored], self.oof[self.scored]
        out = score_report(y, oof) | {"rows": float(len(y))}
        losses = self.fold_scores["log_loss"] if len(self.fold_scores) else pd.Series(dtype=float)
        out |= {"fold_mean": float(losses.mean()), "fold_std": float(losses.std(ddof=1)) if len(losses) > 1 else 0.0}
        for view, probs in self.view_oof.items():
            out[f"log_loss_{view}"] = score_report(y, probs[self.scored])["log_loss"]
            out[f"fold_mean_{view}"] = float(self.fold_scores[f"log_loss_{view}"].mean())
        return out


class FoldStore:
    """Finished folds on disk: `<root>/fold<k>/` holding the fold's oof and test predictions, its facts and
    (optionally) its model, each committed as a unit. With `writer=False` (the other ranks of a data-parallel
    run, whose rank 0 writes) it reads finished folds but writes nothing."""

    def __init__(self, root: str | Path, save_models: bool = True, writer: bool = True, basis: str = ""):
        self.root = Path(root)
        self.save_models = save_models
        self.writer = writer
        self.basis = basis  # what the run's folds are made from (settings, data): a fold made from another is stale

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold{fold}"

    def done(self, fold: int, key: str = "") -> bool:
        """Whether the fold is finished: its unit (and its model's) is there, checks out against its manifest, and was
        made from what this run's fold is made from (`key`: the settings, data and rows; see `fold_key`). A damaged
        unit (a file changed or torn, the manifest edited) or a stale one (a rerun into the same folder with other
        data or settings) is not finished: the writer removes it, with a warning, and the fold is trained again (a
        fold is made from the run's inputs alone, so nothing is lost)."""
        directory = self.fold_dir(fold)
        if not (directory / MANIFEST_FILE).exists():
            return False
        try:
            manifest = read_manifest(directory, RunKind.FOLD)
            if self.save_models:
                read_manifest(directory / MODEL_DIR, RunKind.MODEL)
            made_from = manifest.get("facts", {}).get(FOLD_KEY)
            if key and made_from != key:
                raise InputError("it was made from other data or settings than this run's")
        except InputError as err:
            log.warning("fold %d is damaged or stale (%s): it is trained again", fold, err)
            if self.writer:
                shutil.rmtree(directory)
            return False
        return True

    def save(self, fold: int, ids, probs, test_ids, test_probs, facts: dict, estimator, key: str = "") -> None:
        if not self.writer:
            return
        with staged_unit(self.fold_dir(fold), RunKind.FOLD, facts | ({FOLD_KEY: key} if key else {})) as staging:
            save_predictions(staging / OOF_FILE, ids, probs)
            if test_probs is not None:
                save_predictions(staging / TEST_FILE, test_ids, test_probs)
            (staging / FACTS_FILE).write_text(json.dumps(facts, indent=1), encoding="utf-8")
            if self.save_models:
                with staged_unit(staging / MODEL_DIR, RunKind.MODEL) as model_dir:
                    estimator.save(model_dir)

    def load(self, fold: int, ids, test_ids) -> tuple[np.ndarray, np.ndarray | None, dict]:
        directory = self.fold_dir(fold)
        manifest = read_manifest(directory, RunKind.FOLD)
        probs = probabilities_for(load_predictions(directory / OOF_FILE), ids)
        test = None
        if test_ids is not None and (directory / TEST_FILE).exists():
            test = probabilities_for(load_predictions(directory / TEST_FILE), test_ids)
        facts = dict(manifest.get("facts", {}))
        facts.pop(FOLD_KEY, None)
        return probs, test, facts


def fold_key(basis: str, fold: int, fit_ids: np.ndarray, fit_labels: np.ndarray, valid_ids: np.ndarray, test_ids) -> str:
    """What one fold is made from: the run's basis (settings and data digests), its training rows and their labels,
    the rows it scores and the test rows."""
    digest = hashlib.sha256(f"{basis}|{fold}".encode())
    for part in (fit_ids, fit_labels, valid_ids, () if test_ids is None else test_ids):
        digest.update(("\n".join(map(str, part)) + f"|{len(part)}|").encode("utf-8"))
    return digest.hexdigest()


def subsample(rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` of `rows`, drawn without replacement, kept in their original order."""
    if limit is None or len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def cross_fit(
    make_estimator: Callable[[int], PreferenceEstimator],
    frame: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    test: pd.DataFrame | None = None,
    *,
    only_folds: tuple[int, ...] | list[int] = (),
    max_train_rows: int | None = None,
    max_valid_rows: int | None = None,
    subsample_seed: int = 0,
    store: FoldStore | None = None,
    inspect: Callable[[int, PreferenceEstimator], object] | None = None,
    views: dict[str, pd.DataFrame] | None = None,
    description: str = "folds",
    predict: Callable[[PreferenceEstimator, pd.DataFrame], np.ndarray] | None = None,
) -> CrossFitResult:
    """Out-of-fold predictions of `make_estimator(fold)` fitted on the rows of every other fold.

    `frame`, `y`, `folds`, `groups` are row-aligned; `test` (optional) is predicted by every fold's
    model and averaged. `max_train_rows`/`max_valid_rows` subsample each fold (seeded per fold) for quick
    CPU runs. `inspect(fold, estimator)` may return anything worth keeping from a fitted estimator
    (e.g. feature importance); results land in `extras[fold]`. `views` are other versions of the same rows
    (same order), used only to score the fold's rows: e.g. "alone", each row's features computed as if its
    file held no other answer to its prompt. Views are not stored in a `FoldStore`. `predict(estimator, rows)` scores
    the fold's rows, the test rows and the views (default: `estimator.predict_proba(rows)`; data-parallel training
    passes one that shares the rows among its processes).
    """
    predict = predict or (lambda estimator, rows: estimator.predict_proba(rows))
    views = views or {}
    if views and store is not None:
        raise ValueError("scoring views are not kept in a fold store")
    start = time.perf_counter()
    y, folds, groups = np.asarray(y), np.asarray(folds), np.asarray(groups)
    ids = frame["id"].to_numpy().astype(str)
    test_ids = None if test is None else test["id"].to_numpy().astype(str)
    n_folds = int(folds.max()) + 1
    chosen = list(only_folds) or list(range(n_folds))
    oof = np.full((len(frame), 3), np.nan)
    scored = np.zeros(len(frame), dtype=bool)
    test_sum = None if test is None else np.zeros((len(test), 3))
    test_count, rows, extras, stopped = 0, [], {}, False
    view_oof = {name: np.full((len(frame), 3), np.nan) for name in views}
    for fold in progress(chosen, description):
        fit_rows = subsample(np.flatnonzero(folds != fold), max_train_rows, subsample_seed + fold)
        valid_rows = subsample(np.flatnonzero(folds == fold), max_valid_rows, subsample_seed + fold)
        key = (
            ""
            if store is None or not store.basis
            else fold_key(store.basis, fold, ids[fit_rows], y[fit_rows], ids[valid_rows], test_ids)
        )
        if store is not None and store.done(fold, key):
            log.info("fold %d already finished in %s: skipped", fold, store.root)
            probs, fold_test, facts = store.load(fold, ids[valid_rows], test_ids)
        else:
            fold_start = time.perf_counter()
            estimator = make_estimator(fold).fit(frame.iloc[fit_rows], y[fit_rows], groups[fit_rows])
            if getattr(estimator, "stopped_", False):
                stopped = True
                break
            probs = predict(estimator, frame.iloc[valid_rows])
            fold_test = None if test is None else predict(estimator, test)
            facts = {"fold": fold, "train_rows": len(fit_rows), "rows": len(valid_rows)}
            facts |= dict(getattr(estimator, "fit_facts_", {})) | {"seconds": time.perf_counter() - fold_start}
            for name, view in views.items():
                view_oof[name][valid_rows] = predict(estimator, view.iloc[valid_rows])
                facts[f"log_loss_{name}"] = score_report(y[valid_rows], view_oof[name][valid_rows])["log_loss"]
            if inspect is not None:
                extras[fold] = inspect(fold, estimator)
            if store is not None:
                store.save(fold, ids[valid_rows], probs, test_ids, fold_test, facts, estimator, key)
            # a fold's model is done with: free it (a GPU model would otherwise live on into the next fold's fit)
            getattr(estimator, "release", lambda: None)()
            del estimator
        oof[valid_rows] = probs
        scored[valid_rows] = True
        if fold_test is not None and test_sum is not None:
            test_sum += fold_test
            test_count += 1
        rows.append({**facts, **score_report(y[valid_rows], probs)})
    test_probs = test_sum / test_count if test_sum is not None and test_count else None
    return CrossFitResult(
        ids=ids,
        y=y,
        folds=folds,
        groups=groups,
        oof=oof,
        scored=scored,
        fold_scores=pd.DataFrame(rows),
        test_ids=test_ids,
        test_probs=test_probs,
        stopped=stopped,
        seconds=time.perf_counter() - start,
        extras=extras,
        view_oof=view_oof,
    )


def write_cross_fit(directory: str | Path, result: CrossFitResult, normalise: bool = True) -> None:
    """The files a cross-fitted run leaves for the blender and reports: oof, test, per-fold and summary.

    `normalise=False` when the result was read back from a fold store (see `prediction_frame`)."""
    directory = Path(directory)
    s = result.scored
    save_predictions(
        directory / OOF_FILE,
        result.ids[s],
        result.oof[s],
        normalise,
        fold=result.folds[s],
        label=result.y[s],
        group=result.groups[s],
    )
    for view, probs in result.view_oof.items():
        save_predictions(directory / f"oof_{view}.parquet", result.ids[s], probs[s], fold=result.folds[s], label=result.y[s])
    if result.test_probs is not None:
        save_predictions(directory / TEST_FILE, result.test_ids, result.test_probs)
    result.fold_scores.to_csv(directory / "cv_folds.csv", index=False)
    (directory / "cv_summary.json").write_text(json.dumps(result.summary(), indent=1), encoding="utf-8")
