"""blend: weights over several runs' out-of-fold predictions, applied to their test predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from competition.metric import score_report
from competition.predictions import OOF_FILE, TEST_FILE, save_predictions
from competition.rundir import check_run, file_digest, run_unit
from competition.submission import write_submission
from ensemble.blend import apply_blend, cross_fitted_blend, fit_blend_weights, honest_blend_folds
from ensemble.runs import load_runs
from ensemble.settings import BlendConfig

log = logging.getLogger(__name__)


def run_blend(cfg: BlendConfig) -> pd.DataFrame:
    """Fits the weights, writes the blend run (oof/test/weights/report) as one unit, returns the report."""
    check_run(cfg)
    runs = load_runs(list(cfg.runs))
    weights = fit_blend_weights(runs.oof, runs.y, cfg.temperature)
    blended = apply_blend(runs.oof, weights)
    honest_folds = honest_blend_folds(runs.y, runs.folds, runs.groups)
    honest = None if honest_folds is None else cross_fitted_blend(runs.oof, runs.y, honest_folds, cfg.temperature)
    rows = [
        {"model": name, "weight": float(w), **score_report(runs.y, p)}
        for name, w, p in zip(runs.names, weights.weights, runs.oof, strict=True)
    ]
    rows.append({"model": "blend (in-sample weights)", "weight": 1.0, **score_report(runs.y, blended)})
    if honest is None:
        log.warning("the runs share one fold and their files carry no prompt groups: no cross-fitted blend figure")
    else:
        own_folds = honest_folds is runs.folds
        label = "by fold" if own_folds else f"on {len(np.unique(honest_folds))} prompt-grouped sub-folds of the shared rows"
        rows.append({"model": f"blend (weights cross-fitted {label})", "weight": 1.0, **score_report(runs.y, honest)})
    report = pd.DataFrame(rows)
    test_probs = None if runs.test is None else apply_blend(runs.test, weights)
    with run_unit(cfg) as staging:
        # The saved out-of-fold blend is the cross-fitted one, so a later blend of blends stays honest.
        groups = {} if runs.groups is None else {"group": runs.groups}
        oof_probs = blended if honest is None else honest
        save_predictions(staging / OOF_FILE, runs.ids, oof_probs, fold=runs.folds, label=runs.y, **groups)
        meta = {
            "runs": list(cfg.runs),
            # what `submit` and the Kaggle bundle check a run against: the out-of-fold file the weights were fitted on
            "oof_sha256": [file_digest(Path(run) / OOF_FILE) for run in cfg.runs],
            "weights": weights.weights.tolist(),
            "temperature": weights.temperature,
            "rows": len(runs.ids),
            "oof_file": "in-sample weights" if honest is None else "cross-fitted weights",
        }
        (staging / "weights.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        report.to_csv(staging / "blend_report.csv", index=False)
        if test_probs is not None:
            save_predictions(staging / TEST_FILE, runs.test_ids, test_probs)
    if test_probs is not None:
        write_submission(cfg.submission_path, runs.test_ids, test_probs)
    return report
