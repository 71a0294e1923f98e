"""Worker placement: shards balanced over workers by padded tokens, the swapped order on its own half of
the workers, and real worker processes (spawned, CPU) SIGKILLed mid-way and then resumed; workers that start
processes of their own (as vLLM does), are stopped with them when the parent fails or dies, and see only
their GPU (CUDA_VISIBLE_DEVICES mapped through the parent's)."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

# the tiny random BERT classifier, the MiniLM tokenizer and the row maker are shared with the engine tests
from test_inference_engine import keep_torch_threads, make_cfg, make_frame, model_dir, tokenizer  # noqa: F401

from competition.errors import InputError
from competition.predictions import load_predictions
from inference.backends import BackendSpec, open_backend, pins_visible_device, visible_device_for
from inference.config import SwapConfig, WorkerConfig
from inference.engine import assign_workers, build_plan, infer_frame
from inference.workers import ShardJob, WorkerFailed, run_workers, worker_placement

ROOT = Path(__file__).resolve().parents[1]


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


def test_visible_device_maps_through_the_parents_list():
    assert visible_device_for("cuda:1", None) == "1"
    assert visible_device_for("cuda", None) == "0"
    assert visible_device_for("cuda:1", "2,3") == "3"
    assert visible_device_for("cuda:0", "2,3") == "2"
    assert visible_device_for("cuda:0", "3") == "3"  # a worker already pinned keeps its GPU
    assert visible_device_for("cuda:1", "GPU-8f2a, MIG-4c1d/1/0") == "MIG-4c1d/1/0"
    with pytest.raises(InputError, match="names 2 GPU"):
        visible_device_for("cuda:2", "0,1,-1,3")  # CUDA stops reading at an invalid entry
    with pytest.raises(InputError, match="names 0 GPU"):
        visible_device_for("cuda:0", "")
    with pytest.raises(InputError, match="not a CUDA device"):
        visible_device_for("cpu", None)


def test_only_vllm_workers_get_their_gpu_alone():
    vllm = partial(open_backend, BackendSpec(kind="vllm", model_path="m"))
    transformers = partial(open_backend, BackendSpec(model_path="m"))
    assert pins_visible_device(vllm) and pins_visible_device(KillAfter(BackendSpec(kind="vllm"), 1))
    assert not pins_visible_device(transformers) and not pins_visible_device(KillAfter(BackendSpec(), 1))
    assert worker_placement(vllm, "cuda:1", "4,5") == ({"CUDA_VISIBLE_DEVICES": "5"}, "cuda:0")
    assert worker_placement(transformers, "cuda:1", "4,5") == ({}, "cuda:1")
    assert worker_placement(vllm, "cpu", "4,5") == ({}, "cpu")


class Uniform:
    def score(self, sequences):
        return np.full((len(sequences), 3), 1 / 3)


class StartsAChild:
    """A backend factory whose worker starts a spawn-context child process of its own, as vLLM starts its engine
    core; a daemonic worker may not ("daemonic processes are not allowed to have children")."""

    def __call__(self, device, threads):
        child = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
        child.start()
        child.join(120)
        if child.exitcode != 0:
            raise RuntimeError(f"the worker's child exited with {child.exitcode}")
        return Uniform()


class HangsAfterOneBatch:
    """A backend factory whose worker starts a child that sleeps, writes both pids to `<pid_dir>/<pid>`, scores
    one batch and then hangs."""

    def __init__(self, pid_dir: Path):
        self.pid_dir = pid_dir

    def __call__(self, device, threads):
        child = mp.get_context("spawn").Process(target=time.sleep, args=(600,))
        child.start()
        (self.pid_dir / str(os.getpid())).write_text(f"{os.getpid()} {child.pid}")
        return _Hangs()


class _Hangs:
    def __init__(self):
        self.scored = 0

    def score(self, sequences):
        if self.scored:
            time.sleep(600)
        self.scored += 1
        return np.full((len(sequences), 3), 1 / 3)


def tiny_jobs(directory: Path, workers: int, batches: int = 1) -> list[list[ShardJob]]:
    """One shard per worker of `batches` one-row batches."""
    jobs = []
    for w in range(workers):
        items = [np.array([w * batches + b]) for b in range(batches)]
        ids = np.array([f"w{w}b{b}" for b in range(batches)])
        sequences = [[np.arange(1, 4)] for _ in range(batches)]
        jobs.append([ShardJob(w, directory / f"shard-{w}.parquet", items, sequences, ids, np.zeros(batches, dtype=bool))])
    return jobs


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for a reaper that a container may not have)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def recorded_pids(pid_dir: Path) -> list[int]:
    return [int(pid) for p in pid_dir.iterdir() for pid in p.read_text().split()]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")


def test_a_worker_may_start_processes_of_its_own(tmp_path):
    stats = run_workers(StartsAChild(), ["cpu", "cpu"], 1, tiny_jobs(tmp_path, 2), lambda message: None)
    assert [s.shards for s in stats] == [[0], [1]]
    assert all(len(load_predictions(tmp_path / f"shard-{w}.parquet")) == 1 for w in (0, 1))


@needs_proc
def test_workers_and_their_children_stop_when_the_parent_fails(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()

    def parent_fails(message):
        raise RuntimeError("the parent failed")

    jobs = [tiny_jobs(tmp_path, 1, batches=2)[0], []]  # one worker process: the second has nothing to do
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="the parent failed"):
        run_workers(HangsAfterOneBatch(pid_dir), ["cpu", "cpu"], 1, jobs, parent_fails)
    assert time.monotonic() - start < 120
    pids = recorded_pids(pid_dir)
    assert len(pids) == 2, "the worker and its child were started"
    assert not [pid for pid in pids if running(pid)], "run_workers returned with a worker or its child still running"


@needs_proc
def test_a_worker_whose_parent_is_killed_stops_with_its_children(tmp_path):
    """SIGKILL leaves the parent no `finally`: the worker notices its parent is gone and stops itself."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = {sys.path!r}
        from pathlib import Path
        from test_inference_workers import HangsAfterOneBatch, tiny_jobs
        from inference.workers import run_workers
        out = Path({str(tmp_path)!r})
        run_workers(HangsAfterOneBatch(out / "pids"), ["cpu", "cpu"], 1, [tiny_jobs(out, 1, batches=2)[0], []], print)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list(pid_dir.iterdir()) and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
        pids = recorded_pids(pid_dir)
        assert len(pids) == 2, "the worker and its child were started"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 60
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if running(pid)], "the orphaned worker or its child is still running"
