"""What `cv` and `fit` need to know about a model family beyond its estimator: which rows it reads, what it adds to
the frame before the cross-fit loop, whether its finished folds are kept on disk (a killed run resumes fold by
fold), and the files it adds to the run. A family with none of these needs no entry here: `Workflow` serves it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from competition.crossfit import MODEL_DIR, CrossFitResult, FoldStore
from competition.errors import InputError
from data.labelled import load_unlabelled

log = logging.getLogger(__name__)

FOLDS_DIR = "folds"
CHECKPOINTS_DIR = "checkpoints"


@dataclass
class CrossFitPlan:
    frame: pd.DataFrame  # the training rows as the estimator reads them (feature columns attached, ...)
    test: pd.DataFrame | None
    make: Callable[[int], object]  # fold -> a fresh estimator
    views: dict[str, pd.DataFrame] = field(default_factory=dict)
    inspect: Callable | None = None
    options: dict = field(default_factory=dict)  # only_folds, max_train_rows, max_valid_rows, subsample_seed


class SingleProcess:
    is_main = True

    def barrier(self) -> None:
        pass

    def leave(self) -> None:
        pass


class Workflow:
    """The default: the loader's frame as it is, folds computed in one go, no extra files."""

    battles_for = ""  # why every row must name both models (a family that learns from model identities)
    keeps_folds = False  # finished folds committed under folds/ and skipped when the command runs again
    data_fields: tuple[str, ...] = ()  # optional data settings this family reads (unlabeled, grades)

    def check(self, cfg) -> None:
        """Settings checked before any data is read or model loaded."""
        for name in ("unlabeled", "grades"):
            if getattr(cfg.data, name) and name not in self.data_fields:
                raise InputError(f"data.{name} is not read by the {cfg.family!r} family: unset it")

    def ranks(self, cfg):
        return SingleProcess()

    def main_rank(self) -> bool:
        return True

    def leave(self) -> None:
        pass

    def plan(self, cfg, family, train: pd.DataFrame, test: pd.DataFrame | None) -> CrossFitPlan:
        return CrossFitPlan(train, test, lambda fold: family.build(cfg, cfg.cv.seed + fold))

    def fit_frame(self, cfg, train: pd.DataFrame) -> pd.DataFrame:
        return train

    def full_estimator(self, cfg, family, train: pd.DataFrame):
        return family.build(cfg, cfg.cv.seed)

    def after_folds(self, cfg, store: FoldStore | None, ranks) -> None:
        pass

    def report(self, cfg, result: CrossFitResult, train: pd.DataFrame, folds: np.ndarray, store, started: float) -> dict:
        """The family's extra figures; under "files", the extra files of the run (name -> writer(path))."""
        return {}


class LGBMWorkflow(Workflow):
    """LightGBM builds its features once for every fold (cached), scores each row "alone" too, keeps importances."""

    def plan(self, cfg, family, train, test):
        plan = feature_plan(cfg, family, train, test, attached_groups(cfg))
        return replace(plan, inspect=lambda fold, model: model.feature_importance())

    def fit_frame(self, cfg, train):
        return training_features(train, cfg.features.groups, cfg.features) if cfg.features.table_dir else train

    def report(self, cfg, result, train, folds, store, started):
        importance = pd.concat(list(result.extras.values()), axis=1).mean(axis=1).sort_values(ascending=False)
        return {"files": {"importance.csv": lambda path: importance.rename("gain").to_csv(path)}, "importance": importance}


class PairwiseWorkflow(LGBMWorkflow):
    """The answer GBDT reads the same computed feature columns as LightGBM (built once, rows scored "alone" too)."""

    def plan(self, cfg, family, train, test):
        return feature_plan(cfg, family, train, test, cfg.features.groups)

    def report(self, cfg, result, train, folds, store, started):
        return {}


def feature_plan(cfg, family, train: pd.DataFrame, test: pd.DataFrame | None, groups: tuple[str, ...]) -> CrossFitPlan:
    """Computed feature columns attached once for every fold, and the "alone" view of the training rows."""
    from features.registry import attach_features, attach_features_alone

    return CrossFitPlan(
        frame=training_features(train, groups, cfg.features),
        test=None if test is None else attach_features(test, cfg.features.groups, cfg.features.cache_dir),
        make=lambda fold: family.build(cfg, cfg.cv.seed + fold),
        views={"alone": attach_features_alone(train, groups, cfg.features.cache_dir)},
    )


def attached_groups(cfg) -> tuple[str, ...]:
    """The computed groups to add to the training frame once: the model's, and its teacher's (refitted per fold)."""
    from features.registry import FeatureConfig
    from models.distill import teacher_recipe
    from models.lgbm import LGBMConfig

    groups = cfg.features.groups
    if cfg.lgbm.teacher:
        _, teacher_features = teacher_recipe(cfg.lgbm.teacher, LGBMConfig, FeatureConfig)
        groups = tuple(dict.fromkeys(groups + teacher_features.groups))
    return groups


def training_features(train: pd.DataFrame, groups: tuple[str, ...], features) -> pd.DataFrame:
    """`train` with its computed feature columns: read from a table built by `features` when one is set, else
    computed here (the "alone" view is always computed: a table holds the whole-file view only)."""
    from features.registry import attach_features, computed

    if not features.table_dir:
        return attach_features(train, groups, features.cache_dir)
    from features.parts import read_feature_table

    table = read_feature_table(features.table_dir, train, computed(groups))
    return pd.concat([train.drop(columns=[c for c in train.columns if c in table.columns]), table], axis=1)


class TransformerWorkflow(Workflow):
    """Fine-tuning: every fold is kept on disk with a checkpoint while it trains (a killed fold resumes), ranks of a
    torchrun launch train each fold together, and unlabeled rows may join with the teacher's probabilities."""

    keeps_folds = True
    data_fields = ("unlabeled",)

    def check(self, cfg) -> None:
        super().check(cfg)
        bad = [f for f in cfg.train.only_folds if f >= cfg.cv.folds]
        if bad:
            raise InputError(f"train.only_folds has fold {bad[0]}, but there are {cfg.cv.folds} folds (0..{cfg.cv.folds - 1})")
        cfg.model.resolved_path()  # a missing model directory or package fails here, before any data work
        if cfg.data.unlabeled and not cfg.train.teacher:
            raise InputError("unlabeled rows (data.unlabeled) train on a teacher's probabilities: set --teacher")
        if cfg.train.teacher:
            from features.registry import FeatureConfig
            from models.distill import teacher_recipe
            from models.lgbm import LGBMConfig

            teacher_recipe(cfg.train.teacher, LGBMConfig, FeatureConfig)

    def ranks(self, cfg):
        from models.transformer import distributed

        ranks = distributed.join(cfg.train.device)

        class Joined:
            is_main = ranks.is_main
            barrier = staticmethod(distributed.barrier)
            leave = staticmethod(distributed.leave)

        return Joined()

    def main_rank(self) -> bool:
        from models.transformer.distributed import current_ranks

        return current_ranks().is_main

    def leave(self) -> None:
        from models.transformer.distributed import leave

        leave()

    def plan(self, cfg, family, train, test):
        unlabeled = unlabeled_rows(cfg.data.unlabeled, train)
        checkpoints = cfg.run_dir / CHECKPOINTS_DIR

        def make(fold: int):
            return family.build(cfg, cfg.cv.seed + fold, checkpoint_dir=checkpoints / f"fold{fold}", unlabeled=unlabeled)

        from models.transformer.distributed import sharded_predict

        options = {
            "only_folds": cfg.train.only_folds,
            "max_train_rows": cfg.train.max_train_rows,
            "max_valid_rows": cfg.train.max_valid_rows,
            "subsample_seed": cfg.train.seed,
            "predict": sharded_predict,  # under torchrun each rank scores its share of the rows
        }
        return CrossFitPlan(train, test, make, options=options)

    def full_estimator(self, cfg, family, train):
        return family.build(cfg, cfg.cv.seed, unlabeled=unlabeled_rows(cfg.data.unlabeled, train))

    def after_folds(self, cfg, store, ranks) -> None:
        if ranks.is_main:
            for fold in range(cfg.cv.folds):
                if store.done(fold):
                    shutil.rmtree(cfg.run_dir / CHECKPOINTS_DIR / f"fold{fold}", ignore_errors=True)


def unlabeled_rows(path: str | None, train: pd.DataFrame) -> pd.DataFrame | None:
    """Unlabeled pairs whose prompt is not among the labelled rows' (so none shares a validation prompt)."""
    frame = load_unlabelled(path)
    if frame is None:
        return None
    keep = ~frame["group"].isin(set(train["group"]))
    if not keep.all():
        log.info("unlabeled rows: %d of %d share a prompt with labelled rows and are left out", (~keep).sum(), len(frame))
    return frame.loc[keep].reset_index(drop=True)


class P2LWorkflow(Workflow):
    """Prompt-to-leaderboard learns from battles (both model names on every row); its folds are kept on disk, and the
    run adds every prompt's held-out coefficients and P2L's figures beside the names-only leaderboard's."""

    battles_for = "P2L trains on battles"
    keeps_folds = True
    data_fields = ("grades",)

    def check(self, cfg) -> None:
        super().check(cfg)
        cfg.encoder.resolved_path()  # a missing model fails here, before any data is read

    def report(self, cfg, result, train, folds, store, started):
        from analysis.p2l import COEFFICIENTS_FILE, SUMMARY_FILE, out_of_fold_coefficients, p2l_figures
        from data.tables import read_grades

        if store is None:
            return {}  # a run that writes nothing keeps no fold models to read the coefficients from
        grades = read_grades(cfg.data.grades) if cfg.data.grades else None
        model_dirs = [store.fold_dir(fold) / MODEL_DIR for fold in range(cfg.cv.folds)]
        coefficients = out_of_fold_coefficients(model_dirs, train, folds)
        summary = p2l_figures(train, result.oof, coefficients, folds, grades)
        summary |= {"rows": len(train), "prompts": int(train["group"].nunique()), "folds": cfg.cv.folds}
        summary["seconds"] = time.perf_counter() - started
        files = {
            COEFFICIENTS_FILE: lambda path: coefficients.to_parquet(path, index=False),
            SUMMARY_FILE: lambda path: path.write_text(json.dumps(summary, indent=1), encoding="utf-8"),
        }
        return {"files": files, "summary": summary}


WORKFLOWS: dict[str, Workflow] = {
    "lgbm": LGBMWorkflow(),
    "pairwise_gbdt": PairwiseWorkflow(),
    "transformer": TransformerWorkflow(),
    "p2l": P2LWorkflow(),
}


def workflow(family: str) -> Workflow:
    return WORKFLOWS.get(family, Workflow())
