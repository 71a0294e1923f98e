"""The `train-p2l` stage: P2L fitted per prompt-grouped fold through the one cross-fit loop.

Layout of a run directory (kind "p2l"; e.g. runs/p2l/minilm):
  config.toml, oof.parquet, cv_folds.csv, cv_summary.json   the blender's files (three-way OOF for every battle)
  coefficients.parquet   out-of-fold coefficient table: group, fold, model, coefficient (logits, centred per
                         prompt), tie (the prompt's raw tie parameter); each prompt from the fold model that never saw it
  p2l_summary.json       log loss beside the names-only Bradley-Terry on the same folds; with data.grades, how
                         held-out per-prompt leaderboards match the judge's grades; wall time
  folds/fold<k>/         a finished fold (a unit): oof.parquet, fold_facts.json, model/ (a rerun skips it)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.p2l import COEFFICIENTS_FILE, FOLDS_DIR, RUN_KIND
from competition.config import save_config
from competition.crossfit import MODEL_DIR, CrossFitResult, FoldStore, cross_fit, write_cross_fit
from competition.errors import InputError
from competition.folds import fold_table, prompt_groups
from competition.metric import score_report
from competition.rundir import check_outputs, staged_unit
from data.loader import load_arena_csv
from data.tables import check_model_names, read_grades
from models.p2l.estimator import P2LPreference, unique_prompts
from models.p2l.settings import P2LConfig
from models.registry import load_model

SUMMARY_FILE = "p2l_summary.json"


@dataclass
class P2LRun:
    result: CrossFitResult
    coefficients: pd.DataFrame
    summary: dict
    run_dir: Path


def load_battles(path: str, max_rows: int | None) -> pd.DataFrame:
    """Labelled battles with both model names and each row's prompt group; a file without them is one line."""
    frame = load_arena_csv(path, require_labels=True, max_rows=max_rows)
    for column in ("model_a", "model_b"):
        if column not in frame.columns:
            raise InputError("P2L trains on battles: the file needs model_a and model_b", path, column=column)
    check_model_names(frame, path)
    same = np.flatnonzero((frame["model_a"] == frame["model_b"]).to_numpy())
    if len(same):
        raise InputError(f"a model against itself ({frame['model_a'].iloc[same[0]]!r}) is not a battle", path, int(same[0]) + 1)
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def out_of_fold_coefficients(store: FoldStore, frame: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """Every prompt's coefficients from the fold model that never saw it, read back from the fold store."""
    parts = []
    for fold in np.unique(folds):
        model = load_model(store.fold_dir(int(fold)) / MODEL_DIR)
        rows = frame[folds == fold].drop_duplicates("group")
        prompts, _ = unique_prompts(rows)
        theta, tie = model.coefficients(prompts)
        long = pd.DataFrame(theta, columns=model.models_).assign(group=rows["group"].to_numpy(), fold=int(fold), tie=tie)
        parts.append(long.melt(id_vars=["group", "fold", "tie"], var_name="model", value_name="coefficient"))
    table = pd.concat(parts, ignore_index=True)
    return table[["group", "fold", "model", "coefficient", "tie"]].sort_values(["group", "model"], ignore_index=True)


def coefficient_agreement(coefficients: pd.DataFrame, grades: pd.DataFrame) -> dict[str, float]:
    """Mean Spearman, over prompts, between held-out coefficients and the judge's grades of that prompt."""
    truth = grades.assign(question_id=grades["question_id"].astype(str)).set_index(["question_id", "model"])["grade"]
    correlations = []
    for group, rows in coefficients.groupby("group"):
        true = np.array([truth.get((group, m), np.nan) for m in rows["model"]])
        ok = np.isfinite(true)
        if ok.sum() > 2 and np.std(true[ok]) > 0:
            correlations.append(spearmanr(rows["coefficient"].to_numpy()[ok], true[ok]).statistic)
    return {"prompts": len(correlations), "mean_spearman_vs_grades": float(np.nanmean(correlations)) if correlations else np.nan}


def evaluate(frame: pd.DataFrame, result: CrossFitResult, coefficients: pd.DataFrame, folds, grades) -> dict:
    """P2L's out-of-fold figures beside the names-only global leaderboard's, on the same folds."""
    from analysis.leaderboard.prompt import names_only_out_of_fold, per_prompt_rank_agreement

    y = frame["label"].to_numpy()
    names_only = names_only_out_of_fold(frame, folds)
    out = {"p2l": score_report(y, result.oof), "names_only_bradley_terry": score_report(y, names_only)}
    if grades is not None:
        out["p2l"]["per_prompt_leaderboard"] = per_prompt_rank_agreement(frame, result.oof, grades)
        out["p2l"]["coefficients_vs_grades"] = coefficient_agreement(coefficients, grades)
        out["names_only_bradley_terry"]["per_prompt_leaderboard"] = per_prompt_rank_agreement(frame, names_only, grades)
    return out


def run_train_p2l(cfg: P2LConfig) -> P2LRun:
    """Fits (or resumes) every fold, then commits the run directory as one unit."""
    start = time.perf_counter()
    model_path = cfg.encoder.resolved_path()  # a missing model fails here, before any data is read
    check_outputs(cfg.side_outputs(), [*cfg.inputs(), model_path], cfg.run_dir, RUN_KIND)
    grades = read_grades(cfg.data.grades) if cfg.data.grades else None
    frame = load_battles(cfg.data.train, cfg.data.max_rows)
    y, groups = frame["label"].to_numpy(), frame["group"].to_numpy()
    folds = fold_table(frame["id"], groups, y, cfg.cv.folds, cfg.cv.seed, cfg.cv.fold_dir)["fold"].to_numpy()
    store = FoldStore(cfg.run_dir / FOLDS_DIR)
    result = cross_fit(
        lambda fold: P2LPreference(cfg.encoder, cfg.head, cfg.tune, seed=cfg.seed + fold),
        frame,
        y,
        folds,
        groups,
        store=store,
        description="p2l folds",
    )
    coefficients = out_of_fold_coefficients(store, frame, folds)
    summary = evaluate(frame, result, coefficients, folds, grades)
    summary |= {"rows": len(frame), "prompts": int(frame["group"].nunique()), "folds": cfg.cv.folds}
    summary["seconds"] = time.perf_counter() - start
    facts = {"folds": sorted(int(f) for f in np.unique(folds)), "rows": len(frame)}
    with staged_unit(cfg.run_dir, RUN_KIND, facts) as staging:
        save_config(cfg, staging / "config.toml")
        write_cross_fit(staging, result)
        coefficients.to_parquet(staging / COEFFICIENTS_FILE, index=False)
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return P2LRun(result, coefficients, summary, cfg.run_dir)
