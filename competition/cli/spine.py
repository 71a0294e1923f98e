"""cv, fit, predict and run: the LightGBM spine's commands over competition.cli.pipeline."""

from __future__ import annotations

import argparse

import pandas as pd

from competition.cli import pipeline
from competition.cli.flags import (
    CONFIG,
    FOLDS,
    MAX_ROWS,
    NAME,
    OUT,
    SEED,
    SET,
    TEACHER,
    TEACHER_WEIGHT,
    TEST,
    TRAIN,
    Flag,
    config_from_args,
)
from competition.report import console, print_mapping, print_table
from competition.rundir import check_outputs
from competition.submission import write_submission

MODEL = Flag("--model", None, "run directory (or its model/ folder) written by `fit`", required=True)
SUBMISSION = Flag("--submission", "submission", "submission CSV to write (default: submissions_dir/<name>.csv)")
FEATURES_TABLE = Flag("--features-table", "features.table_dir", "training features from a `features` run (parquet parts)")
TRAINING = (CONFIG, TRAIN, TEST, OUT, NAME, FOLDS, SEED, MAX_ROWS, TEACHER, TEACHER_WEIGHT, FEATURES_TABLE, SET)
FLAGS = {
    "cv": TRAINING,
    "fit": (CONFIG, TRAIN, OUT, NAME, SEED, MAX_ROWS, TEACHER, TEACHER_WEIGHT, FEATURES_TABLE, SET),
    "predict": (CONFIG, MODEL, TEST, SUBMISSION, NAME, SET),
    "run": (*TRAINING[:-1], SUBMISSION, SET),
}


def report_cv(run: pipeline.CVRun, cfg: pipeline.SpineConfig) -> None:
    result = run.result
    print_table(f"{cfg.name}: grouped {cfg.cv.folds}-fold CV ({int(result.scored.sum())} rows)", result.fold_scores)
    s = result.summary()
    print_mapping(
        "out-of-fold",
        {
            "log loss (pooled)": s["log_loss"],
            "log loss (fold mean ± std)": f"{s['fold_mean']:.4f} ± {s['fold_std']:.4f}",
            "log loss, each row alone in its file": s["log_loss_alone"],
            "accuracy": s["accuracy"],
            "prior log loss": s["prior_log_loss"],
            "skill (1 - loss/prior)": s["skill"],
            "seconds": run.seconds,
            "outputs": str(run.run_dir),
        },
    )


def _mean_probs(probs) -> dict[str, float]:
    return {f"mean {name}": float(v) for name, v in zip(("p(a)", "p(b)", "p(tie)"), probs.mean(axis=0), strict=True)}


def predict_and_submit(cfg: pipeline.SpineConfig, model_dir) -> tuple:
    path = cfg.submission_path
    check_outputs([path], [cfg.data.test, model_dir])
    ids, probs = pipeline.predict(model_dir, cfg.data.test)
    return ids, probs, write_submission(path, ids, probs)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(pipeline.SpineConfig, args, FLAGS[args.command])
    if args.command == "cv":
        report_cv(pipeline.run_cv(cfg), cfg)
    elif args.command == "fit":
        console.print(f"model saved to {pipeline.fit(cfg)}")
    elif args.command == "predict":
        ids, probs, path = predict_and_submit(cfg, args.model)
        print_mapping("submission", {"file": str(path), "rows": len(ids), **_mean_probs(probs)})
    else:
        return run_main_job(cfg)
    return 0


def run_main_job(cfg: pipeline.SpineConfig) -> int:
    """The main job: cv on the training file, fit on all of it, predict the test file, one summary."""
    check_outputs([cfg.submission_path, *cfg.side_outputs()], cfg.inputs(), cfg.run_dir, "cv")
    check_outputs([], cfg.inputs(), cfg.run_dir / pipeline.MODEL_DIR, "model")
    run = pipeline.run_cv(cfg)
    report_cv(run, cfg)
    model_dir = pipeline.fit(cfg)
    ids, probs, path = predict_and_submit(cfg, model_dir)
    top, summary = run.importance.head(8), run.result.summary()
    print_table("top features (mean gain over folds)", pd.DataFrame({"feature": top.index, "gain": top.to_numpy()}), 1)
    print_mapping(
        "run",
        {
            "out-of-fold log loss": summary["log_loss"],
            "out-of-fold log loss, alone": summary["log_loss_alone"],
            "skill": summary["skill"],
            "model": str(model_dir),
            "submission": str(path),
            "submission rows": len(ids),
            **_mean_probs(probs),
        },
    )
    return 0
