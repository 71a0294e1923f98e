"""train-transformer: fine-tune a transformer classifier per grouped fold through the one cross-fit loop.

Layout of a run directory (e.g. runs/transformer/minilm):
  config.toml, oof.parquet, test.parquet, cv_folds.csv, cv_summary.json, manifest.json
                              every finished fold combined (test: mean over folds), committed as a unit
  folds/fold{k}/              a finished fold (a unit): oof.parquet, test.parquet, fold_facts.json, model/
  checkpoints/fold{k}/        resumable training state of an unfinished fold (removed once it finishes)

Under `torchrun --nproc-per-node N -m competition train-transformer ...` every rank runs this same command;
they train each fold together (DistributedDataParallel), every rank predicts, and rank 0 alone writes.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

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
    TEST,
    TRAIN,
    UNLABELED,
    config_from_args,
)
from cli.report import print_mapping, print_table
from stages.train_transformer import run_transformer_cv

if TYPE_CHECKING:
    pass


FLAGS = {
    "train-transformer": (
        CONFIG,
        TRAIN,
        TEST,
        OUT,
        NAME,
        FOLDS,
        SEED,
        MAX_ROWS,
        STUDENT_TEACHER,
        STUDENT_TEACHER_WEIGHT,
        UNLABELED,
        SET,
    )
}


def main(args: argparse.Namespace) -> int:
    from models.transformer.distributed import current_ranks, leave
    from models.transformer.settings import TransformerRunConfig

    cfg = config_from_args(TransformerRunConfig, args, FLAGS["train-transformer"])
    try:
        result = run_transformer_cv(cfg)
        main_rank = current_ranks().is_main
    finally:
        leave()
    if not main_rank:
        return 0
    print_table(
        f"{cfg.run_dir}: out-of-fold scores per fold", result.fold_scores.drop(columns=["prior_log_loss"], errors="ignore")
    )
    print_mapping("all out-of-fold rows in the run directory", result.summary())
    return 0
