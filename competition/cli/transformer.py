"""train-transformer: fine-tune a transformer classifier per grouped fold through the one cross-fit loop.

Layout of a run directory (e.g. runs/transformer/minilm):
  config.toml, oof.parquet, test.parquet, cv_folds.csv, cv_summary.json, manifest.json
                              every finished fold combined (test: mean over folds), committed as a unit
  folds/fold{k}/              a finished fold (a unit): oof.parquet, test.parquet, fold_facts.json, model/
  checkpoints/fold{k}/        resumable training state of an unfinished fold (removed once it finishes)
"""

from __future__ import annotations

import argparse
import logging
import shutil

from competition.cli.flags import CONFIG, FOLDS, MAX_ROWS, NAME, OUT, SEED, SET, TEST, TRAIN, config_from_args
from competition.cli.pipeline import load_test, load_train, train_folds
from competition.config import save_config
from competition.crossfit import CrossFitResult, FoldStore, cross_fit, write_cross_fit
from competition.errors import InputError
from competition.report import print_mapping, print_table
from competition.rundir import check_outputs, staged_unit

log = logging.getLogger(__name__)

FLAGS = {"train-transformer": (CONFIG, TRAIN, TEST, OUT, NAME, FOLDS, SEED, MAX_ROWS, SET)}


def run_transformer_cv(cfg) -> CrossFitResult:
    """Trains the selected folds (finished ones are skipped, a killed one resumes from its checkpoint), then
    commits the combined files of every finished fold in the run directory."""
    from models.transformer.estimator import TransformerPreference

    bad = [f for f in cfg.train.only_folds if f >= cfg.cv.folds]
    if bad:
        raise InputError(f"train.only_folds has fold {bad[0]}, but there are {cfg.cv.folds} folds (0..{cfg.cv.folds - 1})")
    model_path = cfg.model.resolved_path()  # a missing model directory or package fails here, before any data work
    inputs = [cfg.data.train, cfg.data.test, cfg.data.extra, model_path]
    check_outputs([cfg.cv.fold_dir], inputs, cfg.run_dir, "transformer")
    train = load_train(cfg.data)
    test = load_test(cfg.data.test)
    folds = train_folds(train, cfg.cv)
    store = FoldStore(cfg.run_dir / "folds")
    checkpoints = cfg.run_dir / "checkpoints"
    common = dict(
        max_train_rows=cfg.train.max_train_rows,
        max_valid_rows=cfg.train.max_valid_rows,
        subsample_seed=cfg.train.seed,
        store=store,
    )
    args = (train, train["label"].to_numpy(), folds, train["group"].to_numpy(), test)

    def make(fold: int) -> TransformerPreference:
        return TransformerPreference(cfg.model, cfg.train, checkpoint_dir=checkpoints / f"fold{fold}")

    trained = cross_fit(make, *args, only_folds=cfg.train.only_folds, description="transformer folds", **common)
    if trained.stopped:
        log.warning("a fold stopped early (train.stop_after_steps); run the same command again to resume it")
    finished = [f for f in range(cfg.cv.folds) if store.done(f)]
    for fold in finished:
        shutil.rmtree(checkpoints / f"fold{fold}", ignore_errors=True)
    if not finished:
        raise InputError("no finished fold in this run directory (a stopped fold resumes when run again)", cfg.run_dir)
    combined = cross_fit(make, *args, only_folds=finished, **common)  # every fold is read back from the store
    with staged_unit(cfg.run_dir, "transformer", {"folds": finished}) as staging:
        save_config(cfg, staging / "config.toml")
        write_cross_fit(staging, combined)
    return combined


def main(args: argparse.Namespace) -> int:
    from models.transformer.settings import TransformerRunConfig

    cfg = config_from_args(TransformerRunConfig, args, FLAGS["train-transformer"])
    result = run_transformer_cv(cfg)
    print_table(
        f"{cfg.run_dir}: out-of-fold scores per fold", result.fold_scores.drop(columns=["prior_log_loss"], errors="ignore")
    )
    print_mapping("all out-of-fold rows in the run directory", result.summary())
    return 0
