"""`submit`: a test file scored by chosen runs (a blend, or one run) into a validated submission, as the Kaggle
bundle runs it (stages/bundle.py), and in place.

Each run scores the test rows the way its test predictions were made when it was trained:
- a run with a fitted model (`fit`'s model/ folder, any family): that model's `predict_proba`;
- a `train-transformer` run: the mean of its finished folds' models. A cross-head fold model is scored by the
  inference engine (length-sorted token-budget batches over the devices, resumable shards under the work
  directory, the GPU plan of inference/gpu_plan.py), with its own packing length, A/B swap averaging, precision
  (4-bit as trained) and prediction token budget, so its batches are the estimator's own; a reward-head fold
  model through its estimator.
A blend applies its weights (and temperature) over its runs, each checked to be the run the weights were fitted
on (the SHA-256 of its out-of-fold file, recorded by `blend`). With a time budget, no shard starts after it runs
out: rows a run could not score get the blend of the runs that did (weights renormalised), counted in the
summary, and a rerun scores only what is missing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from competition.atomic import write_text_atomic
from competition.config import require, save_config
from competition.crossfit import MODEL_DIR
from competition.errors import InputError
from competition.predictions import OOF_FILE
from competition.rundir import (
    MANIFEST_FILE,
    RunKind,
    check_outputs,
    file_digest,
    read_manifest,
    run_kind,
    safe_name,
    write_manifest,
)
from competition.settings import RunLocation
from competition.submission import write_submission
from stages.families import FOLDS_DIR

log = logging.getLogger(__name__)

SUBMIT_KIND = RunKind.SUBMIT
SUMMARY_FILE = "submit_summary.json"


@dataclass(frozen=True)
class ScoringConfig:
    devices: str = "cpu"  # as `infer`: cpu, cpu:N, cuda:0,cuda:1, gpu:N
    threads: int | None = None  # torch CPU threads per worker; default: cores / workers
    dtype: str = "auto"  # auto: float16 on a T4, bfloat16 on compute capability 8 or more, float32 on CPU
    token_budget: int | None = None  # padded tokens per batch; unset: each fold model's own predict_tokens
    max_batch_rows: int = 256
    shard_rows: int = 1024  # the unit written to disk and skipped on a rerun
    placement: str = "balanced"  # swap averaging: both orders over all devices, or one order per half ("split")

    def __post_init__(self) -> None:
        require(self.dtype in ("auto", "float32", "bfloat16", "float16"), "dtype", "must be auto, float32, bfloat16 or float16")
        require(self.token_budget is None or self.token_budget >= 1, "token_budget", "must be at least 1 (or unset)")
        require(self.max_batch_rows >= 1 and self.shard_rows >= 1, "max_batch_rows", "and shard_rows must be at least 1")
        require(self.threads is None or self.threads >= 1, "threads", "must be at least 1 (or unset)")


@dataclass(frozen=True)
class SubmitConfig(RunLocation):
    name: str = "submit"
    runs_dir: str = "runs/submit"  # the work directory (`--out`): resumable shards, summary, config
    test: str = "data/sample/test.csv"
    submission: str = "submission.csv"
    blend: str = ""  # a blend run: its weights over its runs (`runs` in its weights.json unless given here)
    runs: tuple[str, ...] = ()  # the runs to score: a blend's own (in its order, same names), or one run alone
    base_models: tuple[str, ...] = ()  # folders where transformer fold models' bases lie (checked by identity)
    time_budget_s: float = 0.0  # 0: none; else no shard starts later than this many seconds after the start
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self) -> None:
        require(self.time_budget_s >= 0, "time_budget_s", "must be >= 0 (0: no budget)")


@dataclass(frozen=True)
class Component:
    name: str
    run_dir: Path
    model_dirs: tuple[Path, ...]  # one fitted model, or a transformer run's fold models (their mean)


def component(run_dir: str | Path) -> Component:
    """The models a run scores test rows with, after checking the run's manifest: a cv run's kept fold models (their
    mean is its test predictions), else the model `fit` saved beside it; or a model unit itself."""
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    if kind == RunKind.MODEL:
        models: tuple[Path, ...] = (run_dir,)
    elif kind == RunKind.CV:
        folds = read_manifest(run_dir, RunKind.CV).get("facts", {}).get("folds", [])
        kept = tuple(run_dir / FOLDS_DIR / f"fold{k}" / MODEL_DIR for k in folds)
        if kept and all((m / MANIFEST_FILE).exists() for m in kept):
            models = kept
        elif (run_dir / MODEL_DIR / MANIFEST_FILE).exists():
            models = (run_dir / MODEL_DIR,)
        else:
            raise InputError("holds no model to score test rows with (run `fit --out` this run first)", run_dir)
    else:
        raise InputError(f"is a {kind!r} run, not a cv run or a model", run_dir)
    for model in models:
        read_manifest(model, RunKind.MODEL)
    return Component(run_dir.name, run_dir, models)


def blend_plan(cfg: SubmitConfig) -> tuple[list[Component], np.ndarray, float]:
    """(components, weights, temperature): the blend's, each run checked to be the one its weights were fitted on."""
    if not cfg.blend:
        if len(cfg.runs) != 1:
            raise InputError("without --blend, give exactly one run to score (--runs)")
        return [component(cfg.runs[0])], np.ones(1), 1.0
    read_manifest(cfg.blend, RunKind.BLEND)
    meta = json.loads((Path(cfg.blend) / "weights.json").read_text(encoding="utf-8"))
    runs = list(cfg.runs) or list(meta["runs"])
    if [Path(r).name for r in runs] != [Path(r).name for r in meta["runs"]]:
        raise InputError(f"the blend's runs are {meta['runs']}; --runs must name the same runs in the same order", cfg.blend)
    components = [component(run) for run in runs]
    for comp, recorded in zip(components, meta.get("oof_sha256") or [None] * len(runs), strict=True):
        if recorded is not None and file_digest(comp.run_dir / OOF_FILE) != recorded:
            raise InputError("is not the run the blend's weights were fitted on (its oof.parquet differs)", comp.run_dir)
    return components, np.asarray(meta["weights"], dtype=np.float64), float(meta.get("temperature", 1.0))


def run(cfg: SubmitConfig, fresh: bool = False, transformer_only_flags: tuple[str, ...] = ()) -> dict:
    """Scores the test file, writes the submission (validated, atomically) and the work directory's summary.
    `transformer_only_flags`: flags given that only a transformer fold model's scoring reads (the scoring settings,
    base-model folders, time budget, a fresh start); refused when no run to score holds one."""
    from data.loader import load_arena_csv
    from ensemble.blend import BlendWeights, apply_blend_available

    started = time.time()
    components, weights, temperature = blend_plan(cfg)
    if transformer_only_flags and all(_is_cheap(comp) for comp in components):
        raise InputError(
            f"{transformer_only_flags[0]}: no run to score holds a transformer fold model, so nothing would read this flag"
        )
    inputs = [cfg.test, cfg.blend, *(c.run_dir for c in components), *cfg.base_models]
    check_outputs([], inputs, cfg.run_dir, SUBMIT_KIND, [cfg.submission])  # the submission is a file, not a folder
    for comp in components:
        check_component(comp, cfg)
    test = load_arena_csv(cfg.test, require_labels=False)
    deadline = started + cfg.time_budget_s if cfg.time_budget_s else None
    scored, facts = [], {}
    for comp in sorted(components, key=lambda c: not _is_cheap(c)):  # cheap models first: they fill in when time runs out
        began = time.time()
        probs, comp_facts = score_component(comp, test, cfg, deadline, fresh)
        facts[comp.name] = comp_facts | {"seconds": time.time() - began}
        scored.append((comp, probs))
    by_name = {comp.name: probs for comp, probs in scored}
    blended, fewer = apply_blend_available([by_name[c.name] for c in components], BlendWeights(weights, temperature))
    if np.isnan(blended).any():
        missing = int(np.isnan(blended).any(axis=1).sum())
        raise InputError(f"the time budget ran out with {missing} rows scored by no run: rerun to resume (no submission written)")
    path = write_submission(cfg.submission, test["id"].to_numpy(), blended)
    summary = {
        "rows": len(test),
        "submission": str(path),
        "runs": [str(c.run_dir) for c in components],
        "weights": weights.tolist(),
        "temperature": temperature,
        "rows_blended_from_fewer_runs": int(fewer.sum()),
        "seconds": time.time() - started,
        "components": facts,
    }
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.run_dir / "config.toml")
    write_text_atomic(cfg.run_dir / SUMMARY_FILE, json.dumps(summary, indent=1))
    write_manifest(cfg.run_dir, SUBMIT_KIND)
    return summary


def _fold_settings(model_dir: Path, cfg: SubmitConfig):
    from models.transformer.estimator import fold_model_settings, saved_settings

    return fold_model_settings(model_dir, cfg.base_models) if saved_settings(model_dir) else None


def _is_cheap(comp: Component) -> bool:
    from models.registry import saved_family

    return all(saved_family(m) != "transformer" for m in comp.model_dirs)


def check_component(comp: Component, cfg: SubmitConfig) -> None:
    """Before any work: every fold model's base is found and matches, and its folder is sound."""
    from inference.sources import check_source

    for model_dir in comp.model_dirs:
        if _fold_settings(model_dir, cfg) is not None:
            check_source(model_dir, cfg.base_models)


def score_component(comp: Component, test, cfg: SubmitConfig, deadline: float | None, fresh: bool) -> tuple[np.ndarray, dict]:
    """(n, 3) test probabilities of one run (NaN rows: left unscored by the deadline) and its facts."""
    folds = []
    facts: dict = {"models": len(comp.model_dirs), "rows_unscored": 0}
    for k, model_dir in enumerate(comp.model_dirs):
        settings = _fold_settings(model_dir, cfg)
        if settings is not None and settings[0].head == "cross":
            shards = cfg.run_dir / "runs" / safe_name(comp.name) / f"model{k}"
            probs, stats = engine_probabilities(model_dir, settings, test, cfg, shards, deadline, fresh)
            facts[f"model{k}"] = {key: stats[key] for key in ("shards", "shards_scored", "rows_unscored", "oom_splits")}
        else:
            probs = loaded_probabilities(model_dir, test, cfg)
        folds.append(probs)
    stacked = np.stack(folds)
    counted = (~np.isnan(stacked).any(axis=2)).sum(axis=0)
    # a row's mean over the models that scored it (all of them unless the deadline cut a model short)
    mean = np.where(counted[:, None] > 0, np.nansum(stacked, axis=0) / np.maximum(counted, 1)[:, None], np.nan)
    facts["rows_unscored"] = int((counted == 0).sum())
    facts["rows_from_fewer_models"] = int(((counted > 0) & (counted < len(folds))).sum())
    return mean, facts


def loaded_probabilities(model_dir: Path, test, cfg: SubmitConfig) -> np.ndarray:
    """A fitted model's own predict_proba; a LightGBM feature cache goes to the work directory (the bundle is read-only)."""
    from models.registry import load_model

    model = load_model(model_dir, cfg.base_models)
    features = getattr(model, "features", None)
    if features is not None and getattr(features, "cache_dir", ""):
        model.features = replace(features, cache_dir=str(cfg.run_dir / "cache" / "features"))
    return model.predict_proba(test)


def engine_probabilities(model_dir: Path, settings, test, cfg: SubmitConfig, shards: Path, deadline, fresh: bool):
    """A cross-head fold model through the inference engine, with the packing, swap averaging, precision and batch
    budget it was trained and scored with."""
    from inference.config import BatchConfig, InferenceConfig, SwapConfig, WorkerConfig
    from inference.config import ModelConfig as EngineModel
    from inference.engine import decided, infer_frame
    from inference.sources import tokenizer_dir
    from models.backbone import load_tokenizer

    model_cfg, train_cfg = settings
    s = cfg.scoring
    engine_cfg = InferenceConfig(
        model=EngineModel(
            path=str(model_dir),
            dtype=s.dtype,
            quantize_4bit=model_cfg.quantize_4bit,
            max_length=model_cfg.max_length,
            base_models=cfg.base_models,
        ),
        batching=BatchConfig(
            token_budget=s.token_budget or train_cfg.predict_tokens, max_batch_rows=s.max_batch_rows, shard_rows=s.shard_rows
        ),
        workers=WorkerConfig(devices=s.devices, threads=s.threads),
        swap=SwapConfig(average=train_cfg.swap_average, placement=s.placement),
    )
    engine_cfg = decided(engine_cfg)
    tokenizer = load_tokenizer(tokenizer_dir(model_dir, cfg.base_models))
    return infer_frame(test, tokenizer, engine_cfg, shards, fresh=fresh, show_progress=False, deadline=deadline)
