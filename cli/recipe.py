"""recipe: the whole ensemble from a training file to a validated submission, resumable stage by stage."""

from __future__ import annotations

import argparse

import pandas as pd

from cli.flags import CONFIG, FOLDS, MAX_ROWS, NAME, OUT, SEED, SET, TEST, TRAIN, Flag, config_from_args
from cli.report import print_mapping, print_table
from stages.recipe import run_recipe
from stages.recipe_settings import VIEWS, RecipeConfig

SUBMISSION = Flag("--submission", "submission", "blended submission CSV (default: submissions_dir/<name>.csv)")
FLAGS = {"recipe": (CONFIG, TRAIN, TEST, OUT, NAME, FOLDS, SEED, MAX_ROWS, SUBMISSION, SET)}


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(RecipeConfig, args, FLAGS["recipe"])
    run = run_recipe(cfg)
    report = run.report
    rows = [{"model": name, "view": view, **scores} for view in VIEWS for name, scores in report["views"][view].items()]
    print_table(f"{run.run_dir}: out-of-fold ({report['rows']} rows, {report['folds']} folds)", pd.DataFrame(rows))
    if report["ablation"]:
        print_table(
            "ablation: each member left out of the cross-fitted blend (Δ > 0: it helps)", pd.DataFrame(report["ablation"])
        )
    print_mapping(
        "recipe",
        {
            "stages run now": ", ".join(run.ran),
            "weights (fitted on out-of-fold " + report["weights_from"] + ")": str(report["weights"]),
            "submission": str(run.submission),
        },
    )
    return 0
