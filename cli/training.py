"""cv, fit, predict and run: the LightGBM spine's commands over stages.training."""

from __future__ import annotations

import argparse

import pandas as pd

from cli.flags import (
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
from cli.report import console, print_mapping, print_table
from stages import training

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


def report_cv(run: training.CVRun, cfg: training.SpineConfig) -> None:
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


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(training.SpineConfig, args, FLAGS[args.command])
    if args.command == "cv":
        report_cv(training.run_cv(cfg), cfg)
    elif args.command == "fit":
        console.print(f"model saved to {training.fit(cfg)}")
    elif args.command == "predict":
        ids, probs, path = training.predict_and_submit(cfg, args.model)
        print_mapping("submission", {"file": str(path), "rows": len(ids), **_mean_probs(probs)})
    else:
        return run_main_job(cfg)
    return 0


def run_main_job(cfg: training.SpineConfig) -> int:
    job = training.run_main_job(cfg)
    report_cv(job.cv, cfg)
    top, summary = job.cv.importance.head(8), job.cv.result.summary()
    print_table("top features (mean gain over folds)", pd.DataFrame({"feature": top.index, "gain": top.to_numpy()}), 1)
    print_mapping(
        "run",
        {
            "out-of-fold log loss": summary["log_loss"],
            "out-of-fold log loss, alone": summary["log_loss_alone"],
            "skill": summary["skill"],
            "model": str(job.model_dir),
            "submission": str(job.submission),
            "submission rows": len(job.ids),
            **_mean_probs(job.probs),
        },
    )
    return 0
