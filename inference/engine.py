"""Batch inference: plan (sort, batch, shard), run shards over devices, restore the original order by id.

Items are packed rows (and, with swap averaging, their A/B-swapped twins). The plan is fixed by the
inputs and the batching settings, not by the devices, so a rerun after a crash (even on other
devices) finds the same shards on disk and scores only the missing ones. Every shard and the plan file are
sealed with the plan's fingerprint (competition/rundir.py): a shard that is torn, changed or left by another plan
is scored again, and the merge reads only sealed shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import LABEL_COLUMNS, swap_probabilities
from competition.predictions import load_predictions, probabilities_for
from competition.rundir import ABSENT, SEALED, UNSEALED, WHY, check_sealed, discard, seal_state, write_sealed
from inference import gpu_plan
from inference.backends import open_backend
from inference.batching import balance_by_tokens, group_shards, padded_tokens, padding_efficiency
from inference.config import PLACEMENTS, InferenceConfig
from inference.progress import ProgressDisplay
from inference.workers import BackendFactory, ShardJob, group_devices, parse_devices, run_workers, threads_per_worker
from models.transformer.batches import cut_batches, longest_first
from models.transformer.packing import encode_pairs

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
CONFIG_FILE, SUMMARY_FILE, SHARD_DIR = "infer.toml", "infer_summary.json", "infer_shards"


@dataclass(frozen=True)
class Plan:
    item_ids: np.ndarray  # row id of each item
    item_swapped: np.ndarray  # whether the item is the A/B-swapped twin
    sequences: list[np.ndarray]
    shards: list[list[np.ndarray]]  # shard → batches → item indices
    fingerprint: str

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def shard_side(self, shard: int) -> int:
        return int(self.item_swapped[self.shards[shard][0][0]])

    def shard_tokens(self, shard: int) -> int:
        lengths = self.lengths
        return sum(padded_tokens(lengths, b) for b in self.shards[shard])

    def padding_efficiency(self) -> float:
        return padding_efficiency(self.lengths, [b for shard in self.shards for b in shard])


def build_plan(
    ids,
    sequences,
    swapped_sequences=None,
    *,
    token_budget: int,
    max_batch_rows: int | None,
    shard_rows: int,
    sort: bool = True,
    identity: str = "",
) -> Plan:
    """Each side (original, swapped) sorted longest first and cut by the token budget into shards.

    `identity` names what else decides the outputs (model, dtype): it enters the fingerprint.
    """
    ids = np.asarray(ids).astype(str)
    if len(np.unique(ids)) != len(ids):
        raise InputError("row ids must be unique: results are matched back to rows by id")
    sides = [sequences] if swapped_sequences is None else [sequences, swapped_sequences]
    seqs = [np.asarray(s, dtype=np.int32) for side in sides for s in side]
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if len(seqs) and lengths.min() == 0:
        raise InputError("a packed row has no tokens")
    shards = []
    for side in range(len(sides)):
        offset = side * len(ids)
        side_lengths = lengths[offset : offset + len(ids)]
        order = (longest_first(side_lengths) if sort else np.arange(len(ids))) + offset
        shards += group_shards(cut_batches(lengths, order, token_budget, max_batch_rows), shard_rows)
    digest = hashlib.sha256(f"{identity}|{token_budget}|{max_batch_rows}|{shard_rows}|{sort}|{len(sides)}".encode())
    digest.update("\x1f".join(ids).encode())
    digest.update(lengths.tobytes())
    for s in seqs:
        digest.update(s.tobytes())
    return Plan(np.tile(ids, len(sides)), np.repeat(np.arange(len(sides)) == 1, len(ids)), seqs, shards, digest.hexdigest())


def shard_path(shard_dir: Path, shard: int) -> Path:
    return shard_dir / f"shard-{shard:05d}.parquet"


def prepare_shard_dir(plan: Plan, shard_dir: Path, fresh: bool) -> list[int]:
    """Shards still to score. Shards of another plan (other input, model or batching) are never mixed in: a folder
    whose plan file names another plan, or is damaged, is refused (--fresh discards it); a shard not sealed for this
    plan (torn, changed, half-written when a run was killed) is scored again."""
    plan_file = shard_dir / PLAN_FILE
    if fresh and shard_dir.exists():
        shutil.rmtree(shard_dir)
    hint = "pass --fresh to discard the shards, or choose another --out"
    if seal_state(plan_file, None) != ABSENT:
        saved = json.loads(check_sealed(plan_file, None, hint).read_text(encoding="utf-8"))
        if saved.get("fingerprint") != plan.fingerprint:
            raise InputError(f"holds shards of a different input, model or batching; {hint}", shard_dir)
    elif shard_dir.is_dir() and any(shard_dir.glob("shard-*.parquet")):
        raise InputError(f"holds shards but no {PLAN_FILE}; {hint}", shard_dir)
    text = json.dumps({"fingerprint": plan.fingerprint, "shards": len(plan.shards), "items": len(plan.sequences)}, indent=1)
    write_sealed(plan_file, lambda tmp: tmp.write_text(text, encoding="utf-8"), plan.fingerprint)
    pending = []
    for shard in range(len(plan.shards)):
        path = shard_path(shard_dir, shard)
        state = seal_state(path, plan.fingerprint)
        if state == SEALED:
            continue
        if state not in (ABSENT, UNSEALED):
            log.warning("%s %s: scored again", path, WHY[state])
        discard(path)
        pending.append(shard)
    return pending


def make_job(plan: Plan, shard: int, shard_dir: Path, deadline: float | None = None) -> ShardJob:
    batches = plan.shards[shard]
    items = np.concatenate(batches)
    return ShardJob(
        index=shard,
        path=shard_path(shard_dir, shard),
        items=batches,
        sequences=[[plan.sequences[i] for i in b] for b in batches],
        ids=plan.item_ids[items],
        swapped=plan.item_swapped[items],
        deadline=deadline,
        made_for=plan.fingerprint,
    )


def assign_workers(plan: Plan, pending: list[int], n_workers: int, placement: str) -> list[list[int]]:
    """Pending shards per worker, balanced by padded tokens.

    `split` keeps each side (original, swapped) on its half of the workers while both sides have shards
    left; once a rerun finds one side finished, the rest is spread over all workers.
    """
    if placement not in PLACEMENTS:
        raise InputError(f"unknown swap placement {placement!r} (known: {', '.join(PLACEMENTS)})")
    sides = {plan.shard_side(s) for s in pending}
    if placement == "balanced" or len(sides) < 2 or n_workers == 1:
        groups = [(pending, list(range(n_workers)))]
    else:
        half = (n_workers + 1) // 2
        groups = [
            ([s for s in pending if plan.shard_side(s) == side], workers)
            for side, workers in ((0, range(half)), (1, range(half, n_workers)))
        ]
    assigned: list[list[int]] = [[] for _ in range(n_workers)]
    for shards, workers in groups:
        for worker, picked in zip(workers, balance_by_tokens([plan.shard_tokens(s) for s in shards], len(workers)), strict=True):
            assigned[worker] = sorted(shards[i] for i in picked)
    return assigned


def merge_shards(plan: Plan, shard_dir: Path, ids, partial: bool = False) -> np.ndarray:
    """(n, 3) probabilities in the order of `ids`, matched by id; swapped twins are averaged in. Each shard is checked
    against its seal first (a shard changed after it was written is one line naming it).

    `partial`: shards not on disk (a time budget ran out) leave their rows NaN (a row with one of its two orders
    missing too), instead of being an error."""
    hint = "run infer again to score it again"
    present = [s for s in range(len(plan.shards)) if not partial or shard_path(shard_dir, s).exists()]
    frames = [load_predictions(check_sealed(shard_path(shard_dir, s), plan.fingerprint, hint)) for s in present]
    expected = sum(len(b) for s in present for b in plan.shards[s])
    # no shard on disk (a time budget spent before the first one): no rows, with the columns rows would have
    empty = pd.DataFrame({"item": [], "swapped": [], "id": [], **{c: [] for c in LABEL_COLUMNS}})
    items = pd.concat(frames, ignore_index=True) if frames else empty
    if items["item"].duplicated().any() or len(items) != expected:
        raise InputError("shard files do not cover every item exactly once; rerun with --fresh", shard_dir)
    sides = [False, True] if len(plan.sequences) > len(ids) else [False]
    side_probs = [_side_probabilities(items[items["swapped"] == side], ids, partial) for side in sides]
    if len(side_probs) == 1:
        return side_probs[0]
    return (side_probs[0] + swap_probabilities(side_probs[1])) / 2


def _side_probabilities(items: pd.DataFrame, ids, partial: bool) -> np.ndarray:
    if not partial:
        return probabilities_for(items, ids)
    out = np.full((len(ids), 3), np.nan)
    where = pd.Index(np.asarray(ids).astype(str)).get_indexer(items["id"].astype(str))
    out[where] = items[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64)
    return out


def infer_frame(
    frame: pd.DataFrame,
    tokenizer,
    cfg: InferenceConfig,
    shard_dir: Path,
    factory: BackendFactory | None = None,
    fresh: bool = False,
    show_progress: bool = True,
    deadline: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Probabilities for every row of `frame` (original order), with run statistics.

    `deadline` (wall clock, time.time()): no shard starts after it; rows of shards left unscored are NaN and
    counted in the statistics (`rows_unscored`), and a rerun scores only them."""
    start = time.perf_counter()
    # a device that is not there is refused before the plan is written
    devices = group_devices(
        parse_devices(cfg.workers.devices, local=cfg.workers.engine == "local"), cfg.model.tensor_parallel or 1
    )
    max_length, swap = cfg.model.resolved_max_length(), cfg.swap.average
    sequences = encode_pairs(tokenizer, frame, max_length)
    swapped = encode_pairs(tokenizer, frame, max_length, swapped=True) if swap else None
    b = cfg.batching
    identity = f"{cfg.model.path}|{cfg.model.backend}|{cfg.model.dtype}|{cfg.model.quantize_4bit}"
    plan = build_plan(
        frame["id"],
        sequences,
        swapped,
        token_budget=b.token_budget,
        max_batch_rows=b.max_batch_rows,
        shard_rows=b.shard_rows,
        sort=b.sort,
        identity=identity,
    )
    encode_seconds = time.perf_counter() - start
    pending = prepare_shard_dir(plan, shard_dir, fresh)
    threads = threads_per_worker(len(devices), cfg.workers.threads)
    jobs = [
        [make_job(plan, s, shard_dir, deadline) for s in shards]
        for shards in assign_workers(plan, pending, len(devices), cfg.swap.placement)
    ]
    factory = factory or partial(open_backend, cfg.backend_spec())
    display = ProgressDisplay(
        rows=sum(j.rows for js in jobs for j in js), tokens=sum(j.tokens for js in jobs for j in js), enabled=show_progress
    )
    log.info(
        "%d items in %d shards (%d to score) on %s, padding efficiency %.3f",
        len(plan.sequences),
        len(plan.shards),
        len(pending),
        ", ".join(devices),
        plan.padding_efficiency(),
    )
    run_start = time.perf_counter()
    with display:
        worker_stats = _run(cfg, factory, devices, threads, jobs, display.update) if pending else []
    run_seconds = time.perf_counter() - run_start
    probs = merge_shards(plan, shard_dir, frame["id"], partial=deadline is not None)
    scored = sum(s.rows for s in worker_stats)
    stats = {
        "rows": len(frame),
        "items": len(plan.sequences),
        "shards": len(plan.shards),
        "shards_scored": len(pending),
        "shards_skipped": len(plan.shards) - len(pending),
        "items_scored": scored,
        "devices": devices,
        "threads_per_worker": threads,
        "padding_efficiency": plan.padding_efficiency(),
        "oom_splits": sum(s.oom_splits for s in worker_stats),
        "shards_late": sum(len(s.late_shards) for s in worker_stats),
        "rows_unscored": int(np.isnan(probs).any(axis=1).sum()),
        "encode_seconds": encode_seconds,
        "run_seconds": run_seconds,
        "load_seconds_max": max((s.load_seconds for s in worker_stats), default=0.0),
        "items_per_second": scored / run_seconds if scored and run_seconds else None,
        # from the first worker ready to the last one done: leaves out process start and model loading
        "items_per_second_scoring": _scoring_rate(worker_stats),
        "workers": [
            {
                "device": s.device,
                "pid": s.pid,
                "opened_in": s.opened_in,
                "weights_on": s.weights_on,
                "attention": s.attention,
                "load_seconds": s.load_seconds,
                "items": s.rows,
            }
            for s in worker_stats
        ],
    }
    return probs, stats


def decided(cfg: InferenceConfig) -> InferenceConfig:
    """`cfg` with the dtype and tensor parallelism the plan gives for this machine's GPUs, before
    any work; unchanged on CPUs and on the Ray engine (the driver may have no GPUs: each actor's backend applies the
    same rules when it opens, `check_on_device`)."""
    devices = parse_devices(cfg.workers.devices, local=cfg.workers.engine == "local")
    if cfg.workers.engine != "local" or not any(d.startswith("cuda") for d in devices):
        return cfg
    m = cfg.model
    decision = gpu_plan.plan(
        gpu_plan.model_config(m.path, m.base_models),
        m.backend,
        m.dtype,
        m.quantize_4bit,
        gpu_plan.visible_gpus(devices),
        m.tensor_parallel,
    )
    log.info(
        "GPU plan: %s, tensor parallel %d, %.1f GiB of weights per GPU",
        decision.dtype,
        decision.tensor_parallel,
        decision.weight_gib_per_gpu,
    )
    return replace(cfg, model=replace(m, dtype=decision.dtype, tensor_parallel=decision.tensor_parallel))


def _run(cfg: InferenceConfig, factory, devices, threads, jobs, on_message):
    if cfg.workers.engine == "ray":
        from inference.ray_engine import run_ray_workers

        return run_ray_workers(factory, devices, threads, jobs, on_message, cfg.workers.ray_address)
    return run_workers(factory, devices, threads, jobs, on_message)


def _scoring_rate(worker_stats) -> float | None:
    active = [s for s in worker_stats if s.rows]
    if not active:
        return None
    window = max(s.finished_at for s in active) - min(s.started_at for s in active)
    return sum(s.rows for s in active) / window if window > 0 else None
