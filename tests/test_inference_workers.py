"""Worker placement: shards balanced over workers by padded tokens, the swapped order on its own half of
the workers, and real worker processes (spawned, CPU) SIGKILLed mid-way and then resumed."""

import os
import signal
from dataclasses import replace

import numpy as np
import pytest

# the tiny random BERT classifier, the MiniLM tokenizer and the row maker are shared with the engine tests
from test_inference_engine import keep_torch_threads, make_cfg, make_frame, model_dir, tokenizer  # noqa: F401

from competition.predictions import load_predictions
from inference.backends import BackendSpec, open_backend
from inference.config import SwapConfig, WorkerConfig
from inference.engine import assign_workers, build_plan, infer_frame
from inference.workers import WorkerFailed


class KillAfter:
    """A picklable backend factory: the worker process kills itself (SIGKILL) on its batch after `batches`.

    SIGKILL leaves no chance to clean up, as an out-of-memory kill or a preempted machine would.
    """

    def __init__(self, spec: BackendSpec, batches: int):
        self.spec, self.batches = spec, batches

    def __call__(self, device, threads):
        return _KilledMidway(open_backend(self.spec, device, threads), self.batches)


class _KilledMidway:
    def __init__(self, backend, batches: int):
        self.backend, self.left = backend, batches

    def score(self, sequences):
        if self.left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self.left -= 1
        return self.backend.score(sequences)


def two_workers(cfg):
    # one thread each, as in the single-process reference, so every batch computes the same way
    return replace(cfg, workers=WorkerConfig(devices="cpu:2", threads=1))


def test_killed_workers_resume_without_redoing_finished_shards(model_dir, tokenizer, tmp_path):  # noqa: F811
    """Swap averaging split over two workers (original order on one, swapped on the other), both killed
    after two shards each; the rerun scores only the rest and equals one worker scoring both orders in one pass."""
    frame = make_frame(40)
    swap = SwapConfig(average=True, placement="split")
    cfg = two_workers(replace(make_cfg(model_dir, shard_rows=1), swap=swap))  # one batch per shard
    shards = tmp_path / "run" / "shards"
    spec = BackendSpec(model_path=str(model_dir), dtype="float32")
    with pytest.raises(WorkerFailed, match="exited with code -9"):
        infer_frame(frame, tokenizer, cfg, shards, factory=KillAfter(spec, batches=2), show_progress=False)
    finished = sorted(shards.glob("shard-*.parquet"))
    assert len(finished) == 4  # each of the two workers wrote two shards before it was killed
    assert not list(shards.glob(".*.tmp")), "the kill came between shards: no temporary file is left"
    done = [load_predictions(p) for p in finished]
    assert sorted(int(d["swapped"].iloc[0]) for d in done) == [0, 0, 1, 1]  # one order per worker
    mtimes = {p: p.stat().st_mtime_ns for p in finished}

    # the plan does not depend on the devices: the rerun may use others (here one in-process worker)
    one_worker = replace(cfg, workers=WorkerConfig(devices="cpu", threads=1))
    probs, stats = infer_frame(frame, tokenizer, one_worker, shards, show_progress=False)
    assert stats["shards_skipped"] == 4 and stats["shards_scored"] == stats["shards"] - 4
    assert stats["items_scored"] == 2 * len(frame) - sum(len(d) for d in done)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in mtimes.items()), "a finished shard was scored again"

    clean, _ = infer_frame(frame, tokenizer, one_worker, tmp_path / "clean" / "shards", show_progress=False)
    np.testing.assert_allclose(probs, clean, atol=1e-6, rtol=0)


def _plan(n_rows: int, swap: bool):
    rng = np.random.default_rng(0)
    seqs = [list(range(int(k))) for k in rng.integers(1, 200, n_rows)]
    twins = [s[::-1] for s in seqs] if swap else None
    return build_plan([f"r{i}" for i in range(n_rows)], seqs, twins, token_budget=800, max_batch_rows=None, shard_rows=4)


def test_split_placement_keeps_each_order_on_its_half_of_the_workers():
    plan = _plan(60, swap=True)
    assigned = assign_workers(plan, list(range(len(plan.shards))), 4, "split")
    assert sorted(s for shards in assigned for s in shards) == list(range(len(plan.shards)))
    assert {plan.shard_side(s) for w in (0, 1) for s in assigned[w]} == {0}
    assert {plan.shard_side(s) for w in (2, 3) for s in assigned[w]} == {1}
    # a rerun that finds the original order finished spreads the swapped one over every worker
    swapped_left = [s for s in range(len(plan.shards)) if plan.shard_side(s) == 1]
    assert all(assign_workers(plan, swapped_left, 4, "split"))


def test_pending_shards_are_balanced_over_workers_by_padded_tokens():
    plan = _plan(120, swap=False)
    pending = list(range(1, len(plan.shards)))  # as after a rerun with shard 0 done
    assigned = assign_workers(plan, pending, 3, "balanced")
    assert sorted(s for shards in assigned for s in shards) == pending
    loads = [sum(plan.shard_tokens(s) for s in shards) for shards in assigned]
    assert max(loads) - min(loads) <= max(plan.shard_tokens(s) for s in pending)
