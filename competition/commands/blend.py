"""blend: weights over several runs' out-of-fold predictions, applied to their test predictions."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import write_atomic, write_text_atomic
from competition.cli import add_common_arguments
from competition.commands.common import config_from_args
from competition.config import save_config
from competition.metric import score_report
from competition.predictions import OOF_FILE, TEST_FILE, save_predictions
from competition.report import print_table
from competition.submission import write_submission
from ensemble.blend import apply_blend, cross_fitted_blend, fit_blend_weights, honest_blend_folds
from ensemble.runs import load_runs
from ensemble.settings import BlendConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_common_arguments(parser)
    parser.add_argument("--runs", nargs="+", help="run directories with oof.parquet (and test.parquet)")
    parser.add_argument("--temperature", action="store_true", default=None, help="also fit a temperature")


def run_blend(cfg: BlendConfig) -> pd.DataFrame:
    """Fits the weights, writes the blended oof/test predictions, returns the per-model report."""
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
    out = cfg.run_dir
    save_config(cfg, out / "config.toml")
    # The saved out-of-fold blend is the cross-fitted one, so a later blend of blends stays honest.
    groups = {} if runs.groups is None else {"group": runs.groups}
    oof_probs = blended if honest is None else honest
    save_predictions(out / OOF_FILE, runs.ids, oof_probs, fold=runs.folds, label=runs.y, **groups)
    meta = {
        "runs": list(cfg.runs),
        "weights": weights.weights.tolist(),
        "temperature": weights.temperature,
        "rows": len(runs.ids),
        "oof_file": "in-sample weights" if honest is None else "cross-fitted weights",
    }
    write_text_atomic(out / "weights.json", json.dumps(meta, indent=1))
    write_atomic(out / "blend_report.csv", lambda p: report.to_csv(p, index=False))
    if runs.test is not None:
        test_probs = apply_blend(runs.test, weights)
        save_predictions(out / TEST_FILE, runs.test_ids, test_probs)
        write_submission(Path(cfg.submissions_dir) / f"{cfg.name}.csv", runs.test_ids, test_probs)
    return report


def main(args: argparse.Namespace) -> int:
    if args.out:
        out = Path(args.out)
        args.set = [f"runs_dir={str(out.parent)!r}", f"name={out.name!r}", *args.set]
    if args.runs:
        args.set = [f"runs={list(args.runs)!r}".replace("'", '"'), *args.set]
    cfg = config_from_args(BlendConfig, args, {"temperature": "temperature"})
    report = run_blend(cfg)
    print_table(f"blend of {len(cfg.runs)} runs (out-of-fold, rows shared by all runs)", report.drop(columns=["prior_log_loss"]))
    return 0
