"""train-transformer: fine-tune a transformer classifier per grouped fold; writes oof.parquet/test.parquet."""

from __future__ import annotations

import argparse

from competition.cli import add_common_arguments
from competition.commands.common import config_from_args
from competition.report import print_mapping, print_table

FLAG_FIELDS = {
    "train": "data.train",
    "test": "data.test",
    "out": "out",
    "folds": "cv.folds",
    "seed": "cv.seed",
    "max_rows": "data.max_rows",
}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_common_arguments(parser)
    parser.epilog = "e.g. --config configs/transformer/minilm.toml --set train.only_folds=[0] --set train.max_train_rows=2000"


def main(args: argparse.Namespace) -> int:
    from models.transformer.run import run_transformer_cv
    from models.transformer.settings import TransformerRunConfig

    cfg = config_from_args(TransformerRunConfig, args, FLAG_FIELDS)
    result = run_transformer_cv(cfg)
    print_table(
        f"{cfg.run_dir}: out-of-fold scores per fold", result.fold_scores.drop(columns=["prior_log_loss"], errors="ignore")
    )
    print_mapping("all out-of-fold rows in the run directory", result.summary)
    return 0
