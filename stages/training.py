"""The training stages `cv`, `fit`, `predict` and the main job `run`, for any registered model family.

`cv --model <family>` (`family = ...` in a config) cross-fits the family named in models/registry.py; its config is this module's
`TrainingConfig` plus the family's own sections (`[lgbm]` + `[features]`, `[model]` + `[train]`, `[encoder]` +
`[head]` + `[tune]`, ...), made by `training_config(family)`. What a family needs beyond its estimator (features
built once, folds kept on disk, extra files) is its workflow in stages/families.py. The CLI and the tests call these
same functions; each stage writes one unit: `cv` the run directory's files, `fit` its `model/` folder, `predict`
a validated submission file. `predict` reads the test file in chunks of whole prompts
(data/stream.py), so its memory follows `predict.chunk_rows`, not the file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from competition.config import peek_setting, require
from competition.crossfit import MODEL_DIR, CrossFitResult, FoldStore, cross_fit, write_cross_fit
from competition.errors import InputError
from competition.folds import folds_for
from competition.progress import progress
from competition.rundir import MANIFEST_FILE, RunKind, check_outputs, check_run, file_digest, run_unit, value_digest
from competition.settings import CVConfig, DataConfig, RunLocation, submission_file
from competition.submission import write_submission
from data.labelled import load_labelled, load_unlabelled
from data.stream import read_prompt_chunks, scan_prompt_chunks
from models.registry import FAMILIES, family, load_model
from models.transformer.model_files import weights_digest
from stages.families import FOLDS_DIR, workflow

log = logging.getLogger(__name__)
DEFAULT_FAMILY = "lgbm"


@dataclass(frozen=True)
class PredictConfig:
    # test rows scored at a time, in whole prompts: memory follows this, not the test file
    chunk_rows: int = 20_000

    def __post_init__(self) -> None:
        require(self.chunk_rows >= 1, "chunk_rows", "must be at least 1")


@dataclass(frozen=True)
class TrainingData(DataConfig):
    # pairs without labels: the transformer family trains on its teacher's probabilities for them (rows whose prompt
    # is also in the labelled data are dropped, so no fold's validation prompt is ever seen in training)
    unlabeled: str | None = None
    # question_id, model, grade: the p2l family compares its held-out per-prompt leaderboards with them
    grades: str | None = None


@dataclass(frozen=True)
class TrainingConfig(RunLocation):
    """cv / fit / predict / run; `training_config(family)` adds the family's sections."""

    KIND: ClassVar[RunKind] = RunKind.CV
    name: str = "lgbm_base"
    family: str = DEFAULT_FAMILY  # the model family (models/registry.py); `--model` on the command line
    submissions_dir: str = "submissions"
    submission: str = ""  # predict/run: the submission CSV; empty: submissions_dir/<name>.csv
    base_models: tuple[str, ...] = ()  # predict: folders where a transformer fold model's base may be (checked by identity)
    data: TrainingData = field(default_factory=TrainingData)
    cv: CVConfig = field(default_factory=CVConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def __post_init__(self) -> None:
        require(self.family in FAMILIES, "family", f"must be a registered model family ({', '.join(FAMILIES)})")

    @property
    def submission_path(self) -> Path:
        return submission_file(self.submission, self.submissions_dir, self.name)

    def inputs(self) -> list[str | None]:
        data = self.data
        return [data.train, data.test, data.extra, data.unlabeled, data.grades, *self.family_inputs()]

    def side_outputs(self) -> list[str | None]:
        """Folders every training stage may write besides its run: fold tables, and the family's caches."""
        return [self.cv.fold_dir, *self.family_side_outputs()]

    def family_inputs(self) -> list[str | None]:
        return []

    def family_side_outputs(self) -> list[str | None]:
        return []


# where a family's run goes when no config names it (runs_dir/<name>)
DEFAULT_NAMES = {"lgbm": "lgbm_base", "transformer": "transformer/minilm", "p2l": "p2l/minilm"}
# P2L predicts battles: a test file must name both models, so it reads none unless one is given
DEFAULT_DATA = {"p2l": lambda: TrainingData(test="")}


@cache
def training_config(name: str) -> type[TrainingConfig]:
    """The config class of the training stages for one family: TrainingConfig plus the family's sections."""
    settings = family(name).settings_class()
    clash = {f.name for f in fields(settings)} & {f.name for f in fields(TrainingConfig)}
    if clash:
        raise ValueError(f"family {name!r} names a config section the training stages own: {sorted(clash)[0]!r}")
    own = [
        ("family", str, field(default=name)),
        ("name", str, field(default=DEFAULT_NAMES.get(name, name))),
        ("data", TrainingData, field(default_factory=DEFAULT_DATA.get(name, TrainingData))),
    ]
    return make_dataclass(f"TrainingConfig_{name}", own, bases=(settings, TrainingConfig), frozen=True)


def family_of(path: str | Path | None, overrides: list, default: str = DEFAULT_FAMILY) -> str:
    """The family a config file and its overrides name (`family = ...`), before the config itself can be read."""
    name = peek_setting("family", path, overrides, default)
    if name not in FAMILIES:
        raise InputError(f"--model (family) {name!r} is not a registered model family (known: {', '.join(FAMILIES)})", path)
    return str(name)


@dataclass
class CVRun:
    result: CrossFitResult
    report: dict  # the family's extra figures (LightGBM's importance, P2L's summary)
    run_dir: Path
    seconds: float

    @property
    def importance(self) -> pd.Series | None:
        return self.report.get("importance")


# where the run goes and how a call is driven, not what its folds are made from
NOT_IN_FOLD_BASIS = {"name", "runs_dir", "out", "submissions_dir", "submission", "base_models", "predict"}
DRIVING_ONLY = {"stop_after_steps", "num_threads"}  # a killed run resumes with or without them


def fold_basis(cfg: TrainingConfig) -> str:
    """The digest of what a fold-keeping run's folds are made from: its settings, its data files' contents and the
    manifests of the runs it reads (a teacher), so a rerun into the same folder with other data or settings trains its
    folds again rather than reusing them."""

    def settings(value):
        if isinstance(value, dict):
            return {k: settings(v) for k, v in value.items() if k not in DRIVING_ONLY}
        return value

    def contents(path: Path) -> str:
        if path.is_file():
            return file_digest(path)
        if (path / MANIFEST_FILE).is_file():  # a run: its manifest digests its files
            return file_digest(path / MANIFEST_FILE)
        if path.is_dir():  # a model folder (gigabytes): its weight files' names, sizes, headers and sampled blocks
            return weights_digest(path)
        return "absent"

    kept = {k: settings(v) for k, v in asdict(cfg).items() if k not in NOT_IN_FOLD_BASIS}
    data = {str(path): contents(Path(path)) for path in cfg.inputs() if path}
    return value_digest({"settings": kept, "data": data})


def run_cv(cfg: TrainingConfig, write: bool = True) -> CVRun:
    """Grouped K-fold through the cross-fit loop: out-of-fold predictions, per-fold scores, fold-averaged test
    predictions. A family whose folds are kept on disk resumes fold by fold, and its run's files are always combined
    from the fold units on disk (so a resumed run writes the same bytes as an uninterrupted one)."""
    start = time.perf_counter()
    chosen, flow = family(cfg.family), workflow(cfg.family)
    flow.check(cfg)
    if write:
        check_run(cfg)
    ranks = flow.ranks(cfg)
    train = load_labelled(cfg.data, flow.battles_for)
    test = load_unlabelled(cfg.data.test)
    folds = folds_for(train, cfg.cv)
    plan = flow.plan(cfg, chosen, train, test)
    y, groups = train["label"].to_numpy(), train["group"].to_numpy()
    store = (
        FoldStore(cfg.run_dir / FOLDS_DIR, writer=ranks.is_main, basis=fold_basis(cfg)) if flow.keeps_folds and write else None
    )
    common = dict(store=store, **{k: v for k, v in plan.options.items() if k != "only_folds"})
    result = cross_fit(
        plan.make,
        plan.frame,
        y,
        folds,
        groups,
        plan.test,
        only_folds=plan.options.get("only_folds", ()),
        views=plan.views,
        inspect=plan.inspect,
        description=f"{cfg.family} folds",
        **common,
    )
    finished = sorted(int(f) for f in np.unique(folds[result.scored]))
    if store is not None:
        ranks.barrier()  # the main rank has committed every fold before any rank reads them back
        if result.stopped:
            log.warning("a fold stopped early (train.stop_after_steps); run the same command again to resume it")
        flow.after_folds(cfg, store, ranks)
        finished = [f for f in range(cfg.cv.folds) if store.done(f)]
        if not finished:
            raise InputError("no finished fold in this run directory (a stopped fold resumes when run again)", cfg.run_dir)
        result = cross_fit(plan.make, plan.frame, y, folds, groups, plan.test, only_folds=finished, **common)
    report = flow.report(cfg, result, train, folds, store, start)
    seconds = time.perf_counter() - start
    if write and ranks.is_main:
        with run_unit(cfg, {"rows": len(train), "family": cfg.family, "folds": finished}) as staging:
            write_cross_fit(staging, result, normalise=store is None)
            for name, content in report.get("files", {}).items():
                content(staging / name)
    ranks.barrier()
    return CVRun(result, report, cfg.run_dir, seconds)


def run_fit(cfg: TrainingConfig) -> Path:
    """Trains on every training row and saves the model (with the config that built it) as one unit."""
    chosen, flow = family(cfg.family), workflow(cfg.family)
    flow.check(cfg)
    model_dir = cfg.run_dir / MODEL_DIR
    check_run(cfg, model_dir, RunKind.MODEL)
    train = load_labelled(cfg.data, flow.battles_for)
    estimator = flow.full_estimator(cfg, chosen, train)
    estimator.fit(flow.fit_frame(cfg, train), train["label"].to_numpy(), train["group"].to_numpy())
    with run_unit(cfg, {"rows": len(train), "family": cfg.family}, model_dir, RunKind.MODEL) as staging:
        estimator.save(staging)
    return model_dir


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a run directory holding one in `model/`."""
    path = Path(path)
    if (path / MANIFEST_FILE).exists() and (path / "estimator.json").exists():
        return path
    if (path / MODEL_DIR).is_dir():
        return path / MODEL_DIR
    raise InputError("no fitted model here (run `fit` first)", path)


def predict(model_dir: str | Path, test_path: str | Path, base_models: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) for a test file from any saved model family (LightGBM rebuilds its own features)."""
    model = load_model(resolve_model_dir(model_dir), base_models)
    test = load_unlabelled(test_path)
    if test is None:
        raise InputError("predict needs a test file (--test)")
    return test["id"].to_numpy(), model.predict_proba(test)


@dataclass
class Submitted:
    path: Path
    rows: int
    mean_probs: np.ndarray


def run_predict(cfg: TrainingConfig, model_dir: str | Path) -> Submitted:
    """`model_dir`'s predictions of the test file, validated and written atomically once every row has one.

    The file is checked whole first, then scored in chunks of whole prompts (features that look across a
    prompt's answers see all of them), so memory follows `predict.chunk_rows`, not the file. Chunks come in
    prompt order, not file order: their probabilities fill one (rows, 3) array, written out at the end.
    """
    path = cfg.submission_path
    check_outputs([], [cfg.data.test, model_dir], files=[path])
    model = load_model(resolve_model_dir(model_dir), cfg.base_models)
    if not cfg.data.test:
        raise InputError("predict needs a test file (--test)")
    plan = scan_prompt_chunks(cfg.data.test, cfg.predict.chunk_rows)
    probs = np.empty((plan.rows, 3))
    for rows, frame in progress(read_prompt_chunks(plan), "predict chunks", total=plan.chunks):
        probs[rows] = model.predict_proba(frame)
    return Submitted(write_submission(path, plan.ids, probs), plan.rows, probs.mean(axis=0))


@dataclass
class MainJob:
    cv: CVRun
    model_dir: Path
    submitted: Submitted


def run_main_job(cfg: TrainingConfig) -> MainJob:
    """The main job: cv on the training file, fit on all of it, predict the test file."""
    check_outputs(cfg.side_outputs(), cfg.inputs(), cfg.run_dir, RunKind.CV, [cfg.submission_path])
    check_run(cfg, cfg.run_dir / MODEL_DIR, RunKind.MODEL)
    run = run_cv(cfg)
    model_dir = run_fit(cfg)
    return MainJob(run, model_dir, run_predict(cfg, model_dir))
