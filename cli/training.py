"""cv, fit, predict, run, and the family presets train-transformer and train-p2l: flags and printing over
stages/training.py.

Which flags a training command honours depends on the model family it runs (`--model`, or `family = ...` in the
config): the family's own flags (LightGBM's --teacher sets lgbm.teacher, the transformer's sets train.teacher) are
offered only with that family. `--help` lists the flags of the family the command line names (LightGBM by default).
"""

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
    STUDENT_TEACHER,
    STUDENT_TEACHER_WEIGHT,
    TEACHER,
    TEACHER_WEIGHT,
    TEST,
    TRAIN,
    UNLABELED,
    Flag,
    config_from_args,
    overrides,
    peek_args,
)
from cli.report import console, print_mapping, print_table
from competition.errors import InputError
from stages import training

FAMILY = Flag("--model", "family", "the model family to train (lgbm, transformer, p2l, ...: models/registry.py)")
MODEL_DIR = Flag("--model", None, "run directory (or its model/ folder) written by `fit`", required=True)
BASE_MODEL = Flag(
    "--base-model", "base_models", "folder of a transformer fold model's base, checked by identity (repeatable)", action="append"
)
SUBMISSION = Flag("--submission", "submission", "submission CSV to write (default: submissions_dir/<name>.csv)")
CHUNK_ROWS = Flag(
    "--chunk-rows", "predict.chunk_rows", "test rows scored at a time, in whole prompts (memory follows it)", type=int
)
FEATURES_TABLE = Flag("--features-table", "features.table_dir", "training features from a `features` run (parquet parts)")
GRADES = Flag(
    "--grades", "data.grades", "CSV of question_id, model, grade: held-out per-prompt leaderboards are compared with it"
)
FAMILY_FLAGS: dict[str, tuple[Flag, ...]] = {
    "lgbm": (TEACHER, TEACHER_WEIGHT, FEATURES_TABLE),
    "pairwise_gbdt": (FEATURES_TABLE,),
    "transformer": (STUDENT_TEACHER, STUDENT_TEACHER_WEIGHT, UNLABELED),
    "p2l": (GRADES,),
}
# commands that train one family whatever the config says: presets of `cv`
PRESETS = {"train-transformer": "transformer", "train-p2l": "p2l"}
CV_FLAGS = (CONFIG, TRAIN, TEST, OUT, NAME, FOLDS, SEED, MAX_ROWS)


def command_flags(command: str, family: str) -> tuple[Flag, ...]:
    """The flags `command` honours when it runs `family`."""
    own = FAMILY_FLAGS.get(family, ())
    if command == "predict":
        return (CONFIG, MODEL_DIR, TEST, SUBMISSION, CHUNK_ROWS, NAME, BASE_MODEL, SET)
    if command == "fit":
        return (CONFIG, TRAIN, OUT, NAME, SEED, MAX_ROWS, FAMILY, *own, SET)
    if command in PRESETS:
        return (*CV_FLAGS, *own, SET)
    extra = (SUBMISSION, CHUNK_ROWS) if command == "run" else ()
    return (*CV_FLAGS, FAMILY, *own, *extra, SET)


FLAGS = {
    command: command_flags(command, PRESETS.get(command, training.DEFAULT_FAMILY))
    for command in ("cv", "fit", "predict", "run", *PRESETS)
}


def chosen_family(command: str, argv: list[str]) -> str:
    """The family a command line names: a preset's own, else `--model`, `--set family=...` or the config file's."""
    args = peek_args(argv, (CONFIG, FAMILY, SET) if command not in PRESETS else (CONFIG, SET))
    default = PRESETS.get(command, training.DEFAULT_FAMILY)
    family = training.family_of(args.config, overrides(args, (FAMILY,) if command not in PRESETS else ()), default)
    if command in PRESETS and family != default:
        raise InputError(f"{command} trains the {default!r} family; this config names {family!r} (use cv)")
    return family


def flags_for(command: str, argv: list[str]) -> tuple[Flag, ...]:
    return command_flags(command, training.DEFAULT_FAMILY if command == "predict" else chosen_family(command, argv))


def report_cv(run: training.CVRun, cfg: training.TrainingConfig) -> None:
    result = run.result
    print_table(f"{cfg.name}: grouped {cfg.cv.folds}-fold CV ({int(result.scored.sum())} rows)", result.fold_scores)
    s = result.summary()
    alone = {"log loss, each row alone in its file": s["log_loss_alone"]} if "log_loss_alone" in s else {}
    print_mapping(
        "out-of-fold",
        {
            "log loss (pooled)": s["log_loss"],
            "log loss (fold mean ± std)": f"{s['fold_mean']:.4f} ± {s['fold_std']:.4f}",
            **alone,
            "accuracy": s["accuracy"],
            "prior log loss": s["prior_log_loss"],
            "skill (1 - loss/prior)": s["skill"],
            "seconds": run.seconds,
            "outputs": str(run.run_dir),
        },
    )
    figures = run.report.get("summary")
    if figures and "names_only_bradley_terry" in figures:
        rows = {
            f"{name}: log loss": figures[name]["log_loss"] for name in (cfg.family, "names_only_bradley_terry") if name in figures
        }
        for name in (cfg.family, "names_only_bradley_terry"):
            agreement = figures.get(name, {}).get("per_prompt_leaderboard")
            if agreement:
                rows[f"{name}: per-prompt leaderboard, mean Spearman vs grades"] = agreement["mean_spearman_vs_grades"]
        print_mapping("out of fold, grouped by prompt", rows)


def _mean_probs(mean) -> dict[str, float]:
    return {f"mean {name}": float(v) for name, v in zip(("p(a)", "p(b)", "p(tie)"), mean, strict=True)}


def main(args: argparse.Namespace) -> int:
    family = training.DEFAULT_FAMILY if args.command == "predict" else chosen_family(args.command, args.argv)
    flags = command_flags(args.command, family)
    cfg = config_from_args(training.training_config(family), args, flags)
    if args.command == "predict":
        submitted = training.run_predict(cfg, args.model)
        print_mapping("submission", {"file": str(submitted.path), "rows": submitted.rows, **_mean_probs(submitted.mean_probs)})
    elif args.command == "fit":
        console.print(f"model saved to {training.run_fit(cfg)}")
    elif args.command == "run":
        return run_main_job(cfg)
    else:
        run = run_cv_ranked(cfg)
        if run is not None:
            report_cv(run, cfg)
    return 0


def run_cv_ranked(cfg) -> training.CVRun | None:
    """cv, under torchrun too: every rank runs it, the main rank alone reports (the others return None)."""
    from stages.families import workflow

    flow = workflow(cfg.family)
    try:
        run = training.run_cv(cfg)
        return run if flow.main_rank() else None
    finally:
        flow.leave()


def run_main_job(cfg: training.TrainingConfig) -> int:
    job = training.run_main_job(cfg)
    report_cv(job.cv, cfg)
    summary = job.cv.result.summary()
    if job.cv.importance is not None:
        top = job.cv.importance.head(8)
        print_table("top features (mean gain over folds)", pd.DataFrame({"feature": top.index, "gain": top.to_numpy()}), 1)
    print_mapping(
        "run",
        {
            "out-of-fold log loss": summary["log_loss"],
            **({"out-of-fold log loss, alone": summary["log_loss_alone"]} if "log_loss_alone" in summary else {}),
            "skill": summary["skill"],
            "model": str(job.model_dir),
            "submission": str(job.submitted.path),
            "submission rows": job.submitted.rows,
            **_mean_probs(job.submitted.mean_probs),
        },
    )
    return 0
