"""recipe: the whole ensemble from a training file to a submission, stage by stage, each stage a committed unit.

Under the recipe's run directory (default runs/recipe/<preset>):
  plan/        each stage's fingerprint: its settings, the data files' SHA-256 and the fingerprints of the stages
               it reads. A stage whose fingerprint changed since the last run is removed first (with the stages
               that read it), so a rerun with other settings never mixes old and new parts.
  reward/      the reward head per fold (`cv --model transformer`: folds/fold<k>/ with each fold's model);
               first, as the long stage whose first fold shows early whether the settings learn
  teacher/     the names-aware LightGBM cv run, whose recipe the text-only LightGBM distils (refitted inside folds)
  lightgbm/    the text-only LightGBM: cv (out-of-fold whole-file and alone, test) and model/ fitted on all rows
  pairwise/    optional: the pairwise-objective answer GBDT (`--model pairwise_gbdt`) as a blend member: cv, model/
Every stage is the training stages' `run_cv` / `run_fit` (stages/training.py) with a config made here.
  (top)        the blend and its report (stages/recipe_report.py), and the validated submission
A finished stage (its units' manifests check out) is skipped on a rerun, so a killed recipe resumes at the stage
it was in, and the reward head resumes inside its fold from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from competition.errors import InputError
from competition.rundir import RunKind, check_run, file_digest, read_manifest, run_unit, value_digest
from features.registry import FeatureConfig
from stages.recipe_report import write_report
from stages.recipe_settings import RecipeConfig
from stages.training import TrainingConfig, TrainingData, run_cv, run_fit, training_config

log = logging.getLogger(__name__)

# the reward head first: its folds are the long part, and its first fold's figures come before the rest
STAGES = ("reward", "teacher", "lightgbm", "pairwise", "blend")
MODEL_DIR = "model"


def _digest(value) -> str:
    return value_digest(value)[:16]


def fingerprints(cfg: RecipeConfig) -> dict[str, str]:
    """Each enabled stage's fingerprint: its settings, the data's digests and its upstream stages' fingerprints."""
    data = {name: file_digest(Path(path)) for name, path in asdict(cfg.data).items() if name != "max_rows" and path}
    base = {"data": data, "max_rows": cfg.data.max_rows, "cv": asdict(cfg.cv)}
    out = {}
    if cfg.teacher.enabled:
        out["teacher"] = _digest(base | {"stage": asdict(cfg.teacher)})
    out["lightgbm"] = _digest(base | {"stage": asdict(cfg.lightgbm), "teacher": out.get("teacher")})
    if cfg.pairwise.enabled:
        out["pairwise"] = _digest(base | {"stage": asdict(cfg.pairwise)})
    if cfg.reward.enabled:
        out["reward"] = _digest(base | {"stage": asdict(cfg.reward)})
    out["blend"] = _digest({"stage": asdict(cfg.blend), "members": dict(out), "submission": str(cfg.submission_path)})
    return out


def unit_done(directory: Path, kind: RunKind) -> bool:
    try:
        read_manifest(directory, kind)
    except InputError:
        return False
    return True


def _stage(cfg: RecipeConfig, family: str, stage: str, test: bool = True, **sections) -> TrainingConfig:
    """The training stages' config of one recipe stage: its family's sections, the recipe's data and folds."""
    data = TrainingData(**asdict(cfg.data)) if test else TrainingData(**(asdict(cfg.data) | {"test": ""}))
    return training_config(family)(name=stage, out=str(cfg.run_dir / stage), data=data, cv=cfg.cv, **sections)


def teacher_config(cfg: RecipeConfig) -> TrainingConfig:
    features = FeatureConfig(cfg.teacher.groups, cfg.lightgbm.features.cache_dir)
    return _stage(cfg, "lgbm", "teacher", test=False, features=features, lgbm=cfg.teacher.model)  # labels training rows


def lightgbm_config(cfg: RecipeConfig) -> TrainingConfig:
    teacher = str(cfg.run_dir / "teacher") if cfg.teacher.enabled else ""
    return _stage(cfg, "lgbm", "lightgbm", features=cfg.lightgbm.features, lgbm=replace(cfg.lightgbm.model, teacher=teacher))


def pairwise_config(cfg: RecipeConfig) -> TrainingConfig:
    features = FeatureConfig(cfg.pairwise.groups, cfg.lightgbm.features.cache_dir)
    return _stage(cfg, "pairwise_gbdt", "pairwise", features=features)


def reward_config(cfg: RecipeConfig) -> TrainingConfig:
    train = replace(cfg.reward.train, only_folds=())  # every fold: the blend needs each row's out-of-fold prediction
    return _stage(cfg, "transformer", "reward", model=cfg.reward.model, train=train)


def refresh_plan(cfg: RecipeConfig, wanted: dict[str, str]) -> list[str]:
    """Removes the stages whose fingerprint differs from the last plan's, then commits the new plan; returns them."""
    plan_dir = cfg.run_dir / "plan"
    old = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8")) if unit_done(plan_dir, RunKind.RECIPE_PLAN) else {}
    stale = [s for s in STAGES if s != "blend" and old.get(s) != wanted.get(s) and (cfg.run_dir / s).exists()]
    for stage in stale:
        log.info("stage %s was made with other settings or data: removed", stage)
        shutil.rmtree(cfg.run_dir / stage)
    if old != wanted:
        with run_unit(cfg, {}, plan_dir, RunKind.RECIPE_PLAN) as staging:
            (staging / "plan.json").write_text(json.dumps(wanted, indent=1, sort_keys=True), encoding="utf-8")
    return stale


def check_recipe(cfg: RecipeConfig) -> None:
    """The data files, a test file, the reward model and the output paths, before anything is read."""
    for name in ("train", "test", "extra"):
        path = getattr(cfg.data, name)
        if path and not Path(path).is_file():
            raise InputError(f"data.{name} not found", path)
    if not cfg.data.test:
        raise InputError("the recipe ends in a submission: set data.test (--test) to a test file")
    check_run(cfg)


@dataclass
class RecipeRun:
    run_dir: Path
    report: dict
    submission: Path
    ran: list[str] = field(default_factory=list)  # stages computed in this call (the others were finished)
    seconds: dict[str, float] = field(default_factory=dict)


def run_recipe(cfg: RecipeConfig) -> RecipeRun:
    """Runs every unfinished stage in order, then the blend, report and submission."""
    check_recipe(cfg)
    wanted = fingerprints(cfg)
    stages = {
        "reward": reward_config,
        "teacher": teacher_config,
        "lightgbm": lightgbm_config,
        "pairwise": pairwise_config,
    }
    configs = {stage: make(cfg) for stage, make in stages.items() if stage in wanted}
    for stage_cfg in configs.values():  # every stage's outputs and inputs, before any work
        check_run(stage_cfg)
    refresh_plan(cfg, wanted)
    ran, seconds = [], {}
    for stage, stage_cfg in configs.items():
        if _finished(stage_cfg, fitted=stage in FITTED):
            log.info("stage %s already finished: skipped", stage)
            continue
        began = time.perf_counter()
        _run_stage(stage_cfg, fitted=stage in FITTED)
        ran.append(stage)
        seconds[stage] = time.perf_counter() - began
    members = [s for s in ("lightgbm", "pairwise", "reward") if s in wanted]
    began = time.perf_counter()
    report = write_report(cfg, members, wanted, seconds)
    seconds["blend"] = time.perf_counter() - began
    return RecipeRun(cfg.run_dir, report, cfg.submission_path, ran + ["blend"], seconds)


# stages that also fit a model on every training row (the reward head's test predictions are its fold models' mean)
FITTED = ("lightgbm", "pairwise")


def _finished(stage_cfg: TrainingConfig, fitted: bool) -> bool:
    """The stage's cv unit holds every fold (and its model unit exists when it fits one)."""
    try:
        facts = read_manifest(stage_cfg.run_dir, RunKind.CV).get("facts", {})
    except InputError:
        return False
    every_fold = facts.get("folds") == list(range(stage_cfg.cv.folds))
    return every_fold and (not fitted or unit_done(stage_cfg.run_dir / MODEL_DIR, RunKind.MODEL))


def _run_stage(stage_cfg: TrainingConfig, fitted: bool) -> None:
    if not _finished(stage_cfg, fitted=False):
        run_cv(stage_cfg)
        if not _finished(stage_cfg, fitted=False):
            raise InputError(f"the {stage_cfg.name} stage stopped before every fold finished: run the recipe again to resume")
    if fitted and not unit_done(stage_cfg.run_dir / MODEL_DIR, RunKind.MODEL):
        run_fit(stage_cfg)
