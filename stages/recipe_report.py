"""The recipe's last stage: the blend of its members, its out-of-fold report in both scoring modes, the ablation
of each member, and the validated submission.

Out-of-fold figures are honest: the blend weights scoring fold k are fitted on the other folds' out-of-fold
predictions (`cross_fitted_blend`), and every member's out-of-fold prediction of a row comes from a model that
never saw its prompt. "alone": LightGBM's (and the answer GBDT's) predictions with each row's features computed
as if its file held no other answer to its prompt; the reward head reads one row at a time, so its two views are
one. Ablation: the member left out of the cross-fitted blend, Δ log loss per fold (> 0: the member helps).
The submission applies weights fitted on all out-of-fold rows of `blend.weights_from` to the members' test
predictions (each the mean over its fold models).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition.metric import log_loss, score_report
from competition.predictions import OOF_FILE, TEST_FILE, probabilities_for, save_predictions
from competition.rundir import run_unit
from competition.runs import read_run, run_predictions
from competition.submission import write_submission
from ensemble.blend import apply_blend, cross_fitted_blend, fit_blend_weights
from ensemble.runs import AlignedRuns, load_runs
from stages.recipe_settings import VIEWS, RecipeConfig

ALONE_FILE = "oof_alone.parquet"


def view_predictions(runs: AlignedRuns, directories: list[Path]) -> dict[str, list[np.ndarray]]:
    """Each member's out-of-fold probabilities of the shared rows, whole-file and alone."""
    alone = [
        probabilities_for(run_predictions(d, ALONE_FILE), runs.ids) if ALONE_FILE in read_run(d)["files"] else probs
        for d, probs in zip(directories, runs.oof, strict=True)
    ]
    return {"whole": runs.oof, "alone": alone}


def fold_losses(y: np.ndarray, folds: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.array([log_loss(y[folds == f], probs[folds == f]) for f in np.unique(folds)])


def ablation_rows(names, probs: list[np.ndarray], y, folds, full: np.ndarray, view: str, temperature: bool) -> list[dict]:
    """Per member: the cross-fitted blend without it, Δ log loss per fold against the whole blend."""
    rows = []
    base = fold_losses(y, folds, full)
    for i, name in enumerate(names):
        rest = [p for j, p in enumerate(probs) if j != i]
        without = rest[0] if len(rest) == 1 else cross_fitted_blend(rest, y, folds, temperature)
        delta = fold_losses(y, folds, without) - base
        rows.append(
            {"dropped": name, "view": view, "log_loss_without": log_loss(y, without), "delta_mean": float(delta.mean())}
            | {"delta_sd": float(delta.std(ddof=1)), "folds_worse_without": int((delta > 0).sum()), "folds": len(delta)}
        )
    return rows


def write_report(cfg: RecipeConfig, members: list[str], fingerprints: dict, seconds: dict) -> dict:
    """Blends the members' runs, writes the recipe's top unit (report, blend predictions) and the submission."""
    directories = [cfg.run_dir / m for m in members]
    runs = load_runs(directories)
    y, folds = runs.y, runs.folds
    views = view_predictions(runs, directories)
    report: dict = {"members": members, "rows": len(y), "folds": int(len(np.unique(folds))), "views": {}}
    per_fold, ablation, blends = [], [], {}
    for view in VIEWS:
        probs = views[view]
        blends[view] = probs[0] if len(probs) == 1 else cross_fitted_blend(probs, y, folds, cfg.blend.temperature)
        scores = {name: score_report(y, p) for name, p in zip(members, probs, strict=True)}
        scores["blend"] = score_report(y, blends[view])
        report["views"][view] = scores
        for name, p in [*zip(members, probs, strict=True), ("blend", blends[view])]:
            per_fold += [
                {"view": view, "model": name, "fold": int(f), "log_loss": v}
                for f, v in zip(np.unique(folds), fold_losses(y, folds, p), strict=True)
            ]
        if len(probs) > 1:
            ablation += ablation_rows(members, probs, y, folds, blends[view], view, cfg.blend.temperature)
    weights = fit_blend_weights(views[cfg.blend.weights_from], y, cfg.blend.temperature)
    report |= {"weights_from": cfg.blend.weights_from, "weights": dict(zip(members, weights.weights.tolist(), strict=True))}
    report |= {"temperature": weights.temperature, "stage_seconds_this_call": seconds, "fingerprints": fingerprints}
    test_probs = apply_blend(runs.test, weights)
    write_submission(cfg.submission_path, runs.test_ids, test_probs)  # before the unit: a finished unit has its file
    report["submission"] = str(cfg.submission_path)
    with run_unit(cfg, {"members": members}) as staging:
        groups = {} if runs.groups is None else {"group": runs.groups}
        save_predictions(staging / OOF_FILE, runs.ids, blends["whole"], fold=folds, label=y, **groups)
        save_predictions(staging / ALONE_FILE, runs.ids, blends["alone"], fold=folds, label=y)
        save_predictions(staging / TEST_FILE, runs.test_ids, test_probs)
        pd.DataFrame(per_fold).to_csv(staging / "recipe_folds.csv", index=False)
        pd.DataFrame(ablation).to_csv(staging / "ablation.csv", index=False)
        (staging / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    report["ablation"] = ablation
    return report
