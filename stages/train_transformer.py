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

import logging
import shutil

import pandas as pd

from competition.config import save_config
from competition.crossfit import CrossFitResult, FoldStore, cross_fit, write_cross_fit
from competition.errors import InputError
from competition.rundir import check_outputs, staged_unit
from stages.training import load_test, load_train, train_folds

log = logging.getLogger(__name__)


def unlabeled_rows(path: str | None, train) -> pd.DataFrame | None:
    """Unlabeled pairs whose prompt is not among the labelled rows' (so none shares a validation prompt)."""
    frame = load_test(path)
    if frame is None:
        return None
    keep = ~frame["group"].isin(set(train["group"]))
    if not keep.all():
        log.info("unlabeled rows: %d of %d share a prompt with labelled rows and are left out", (~keep).sum(), len(frame))
    return frame.loc[keep].reset_index(drop=True)


def check_student(cfg) -> None:
    """Distillation settings, checked before any data is read or model loaded."""
    if cfg.data.unlabeled and not cfg.train.teacher:
        raise InputError("unlabeled rows (data.unlabeled) train on a teacher's probabilities: set --teacher")
    if cfg.train.teacher:
        from features.registry import FeatureConfig
        from models.distill import teacher_recipe
        from models.lgbm import LGBMConfig

        teacher_recipe(cfg.train.teacher, LGBMConfig, FeatureConfig)


def run_transformer_cv(cfg) -> CrossFitResult:
    """Trains the selected folds (finished ones are skipped, a killed one resumes from its checkpoint), then
    commits the combined files of every finished fold in the run directory."""
    from models.transformer.distributed import barrier, join
    from models.transformer.estimator import TransformerPreference

    bad = [f for f in cfg.train.only_folds if f >= cfg.cv.folds]
    if bad:
        raise InputError(f"train.only_folds has fold {bad[0]}, but there are {cfg.cv.folds} folds (0..{cfg.cv.folds - 1})")
    model_path = cfg.model.resolved_path()  # a missing model directory or package fails here, before any data work
    check_student(cfg)
    inputs = [cfg.data.train, cfg.data.test, cfg.data.extra, cfg.data.unlabeled, cfg.train.teacher, model_path]
    check_outputs([cfg.cv.fold_dir], inputs, cfg.run_dir, "transformer")
    ranks = join(cfg.train.device)
    train = load_train(cfg.data)
    test = load_test(cfg.data.test)
    unlabeled = unlabeled_rows(cfg.data.unlabeled, train)
    folds = train_folds(train, cfg.cv)
    store = FoldStore(cfg.run_dir / "folds", writer=ranks.is_main)
    checkpoints = cfg.run_dir / "checkpoints"
    common = dict(
        max_train_rows=cfg.train.max_train_rows,
        max_valid_rows=cfg.train.max_valid_rows,
        subsample_seed=cfg.train.seed,
        store=store,
    )
    args = (train, train["label"].to_numpy(), folds, train["group"].to_numpy(), test)

    def make(fold: int) -> TransformerPreference:
        return TransformerPreference(cfg.model, cfg.train, checkpoint_dir=checkpoints / f"fold{fold}", unlabeled=unlabeled)

    trained = cross_fit(make, *args, only_folds=cfg.train.only_folds, description="transformer folds", **common)
    barrier()  # rank 0 has committed every fold before any rank reads them back
    if trained.stopped:
        log.warning("a fold stopped early (train.stop_after_steps); run the same command again to resume it")
    finished = [f for f in range(cfg.cv.folds) if store.done(f)]
    if ranks.is_main:
        for fold in finished:
            shutil.rmtree(checkpoints / f"fold{fold}", ignore_errors=True)
    if not finished:
        raise InputError("no finished fold in this run directory (a stopped fold resumes when run again)", cfg.run_dir)
    combined = cross_fit(make, *args, only_folds=finished, **common)  # every fold is read back from the store
    if ranks.is_main:
        with staged_unit(cfg.run_dir, "transformer", {"folds": finished}) as staging:
            save_config(cfg, staging / "config.toml")
            write_cross_fit(staging, combined)
    barrier()
    return combined
