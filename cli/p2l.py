"""train-p2l: Prompt-to-Leaderboard fitted per prompt-grouped fold (models/p2l/); its run joins `blend`, and
`prompt-leaderboard --p2l` and `route --p2l` use it."""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, FOLDS, MAX_ROWS, NAME, OUT, SEED, SET, TRAIN, Flag, config_from_args
from cli.report import console, print_mapping, print_table

GRADES = Flag(
    "--grades", "data.grades", "CSV of question_id, model, grade: held-out per-prompt leaderboards are compared with it"
)
FLAGS = {"train-p2l": (CONFIG, TRAIN, GRADES, OUT, NAME, FOLDS, SEED, MAX_ROWS, SET)}


def main(args: argparse.Namespace) -> int:
    from models.p2l.settings import P2LConfig
    from stages.train_p2l import run_train_p2l

    cfg = config_from_args(P2LConfig, args, FLAGS["train-p2l"])
    run = run_train_p2l(cfg)
    shown = ["fold", "train_rows", "rows", "l2_embedding", "l2_features", "steps", "log_loss", "accuracy", "seconds"]
    scores = run.result.fold_scores
    print_table(f"{cfg.run_dir}: out-of-fold scores per fold", scores[[c for c in shown if c in scores.columns]])
    rows = {}
    for predictor in ("p2l", "names_only_bradley_terry"):
        figures = run.summary[predictor]
        rows[f"{predictor}: log loss"] = figures["log_loss"]
        if "per_prompt_leaderboard" in figures:
            rows[f"{predictor}: per-prompt leaderboard, mean Spearman vs grades"] = figures["per_prompt_leaderboard"][
                "mean_spearman_vs_grades"
            ]
    rows["seconds"] = run.summary["seconds"]
    print_mapping("out of fold, grouped by prompt", rows)
    console.print(f"wrote {run.run_dir}")
    return 0
