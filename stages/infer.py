"""`infer`: length-sorted token-budget inference of a test file over several devices, resumable shard by shard."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from competition.config import save_config
from competition.errors import InputError
from competition.predictions import TEST_FILE, save_predictions
from competition.rundir import RunKind, check_run, read_manifest, run_kind, staged_unit
from competition.runs import run_facts
from inference.backends import check_backend
from inference.config import InferenceConfig, ModelConfig
from inference.engine import CONFIG_FILE, SHARD_DIR, SUMMARY_FILE, decided, infer_frame
from inference.sources import check_source, tokenizer_dir
from inference.workers import BackendFactory, parse_devices

log = logging.getLogger(__name__)


def check_max_length(model: ModelConfig) -> None:
    """A fold model scored at another packing length than it was trained with loses accuracy silently."""
    from models.transformer.estimator import saved_settings

    settings = saved_settings(model.path)
    trained = settings and settings[0].max_length
    if trained and model.max_length and model.max_length != trained:
        log.warning("%s was trained at max_length %d; scoring at %d", model.path, trained, model.max_length)


def run_infer(cfg: InferenceConfig, factory: BackendFactory | None = None, fresh: bool = False) -> dict:
    """`infer`: test.parquet (id + three probabilities) in the run directory, plus its config and statistics.

    Its other files carry an `infer` prefix, so the run directory may be a training run's (one holding
    oof.parquet): its test.parquet is replaced, the run's manifest is rewritten to name it (its facts kept), and
    `blend` reads it as that run's test predictions. Nothing is written before the model, the devices, the backend
    and the cluster are checked; a run killed half-way leaves only its sealed shards, and a rerun scores the rest.
    """
    from data.loader import load_arena_csv
    from models.backbone import load_tokenizer

    if not cfg.model.path:
        raise InputError("infer needs a model directory (--model-path)")
    if not Path(cfg.model.path).is_dir():
        raise InputError("model directory not found", cfg.model.path)
    # infer may add its test predictions to a training run (blend then reads them as that run's)
    base = read_manifest(cfg.run_dir, RunKind.CV) if run_kind(cfg.run_dir) == RunKind.CV else None
    kind = RunKind.CV if base is not None else cfg.KIND
    check_run(cfg, kind=kind)
    check_source(cfg.model.path, cfg.model.base_models)
    check_max_length(cfg.model)
    cfg = decided(cfg)  # dtype and tensor parallelism for the GPUs at hand, or one line saying why not
    cfg = replace(cfg, model=replace(cfg.model, max_length=cfg.model.resolved_max_length()))  # saved as resolved
    check_backend(cfg.backend_spec(), parse_devices(cfg.workers.devices, local=cfg.workers.engine == "local"))
    if cfg.workers.engine == "ray":
        from competition.cluster import ray_module, reachable

        # ray missing or an unreachable cluster is refused before anything is written; connecting here instead would
        # start a local Ray with one CPU, which the workers' own connect then reuses: a second CPU actor waits forever
        ray_module()
        reachable(cfg.workers.ray_address)
    frame = load_arena_csv(cfg.data.test)
    tokenizer = load_tokenizer(tokenizer_dir(cfg.model.path, cfg.model.base_models))
    run_dir = cfg.run_dir
    probs, stats = infer_frame(frame, tokenizer, cfg, run_dir / SHARD_DIR, factory=factory, fresh=fresh)
    with staged_unit(run_dir, kind, run_facts(base) if base else None, adopt=(SHARD_DIR,)) as staging:
        for name in (base or {}).get("files", {}):
            if name not in (TEST_FILE, CONFIG_FILE, SUMMARY_FILE) and not name.startswith(f"{SHARD_DIR}/"):
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run_dir / name, staging / name)
        save_config(cfg, staging / CONFIG_FILE)
        save_predictions(staging / TEST_FILE, frame["id"], probs)
        (staging / SUMMARY_FILE).write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return {**stats, "predictions": str(run_dir / TEST_FILE)}
