"""Worker processes: one per device, each scoring its shards and writing every shard atomically.

With one device the worker runs in this process; with several, each runs in a spawned process (CUDA
and torch threads do not survive fork) and reports progress through a queue. A vLLM worker always gets a
process of its own, whose CUDA_VISIBLE_DEVICES names its GPU alone, set before anything in it starts CUDA
or imports vLLM. A batch that runs out of memory is split in half and retried; later batches at least
that large are split up front.

Workers are not daemonic: vLLM starts its engine core in a child process, which a daemonic process may not
have. They are stopped all the same when the parent fails: `run_workers` terminates them in `finally` (a
SIGTERM to the parent raises there too), a terminated worker stops its own children before it exits, and a
worker whose parent dies without a word (SIGKILL) notices and stops itself.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_module
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from competition.errors import InputError
from competition.labels import as_probabilities
from competition.predictions import prediction_frame
from competition.rundir import write_sealed
from inference.backends import Backend, pins_visible_device, visible_device_for
from models.transformer.batches import OomBackoff, padded_size, score_with_backoff

log = logging.getLogger(__name__)

BackendFactory = Callable[[str, "int | None"], Backend]
Report = Callable[[tuple], None]
STOP_GRACE_SECONDS = 10.0  # a terminated worker's time to stop its own children (vLLM's engine) before it is killed


@dataclass
class ShardJob:
    """One shard's work: per batch the item indices and their token ids; where to write the result."""

    index: int
    path: Path
    items: list[np.ndarray]
    sequences: list[list[np.ndarray]]
    ids: np.ndarray  # row id per item, items in batch order
    swapped: np.ndarray
    deadline: float | None = None  # wall clock (time.time()) after which the shard is left for a rerun
    made_for: str = ""  # the plan's fingerprint: the shard is sealed for it (competition/rundir.py)

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.items)

    @property
    def tokens(self) -> int:
        return sum(padded_size(s) for s in self.sequences)


@dataclass
class WorkerStats:
    batches: int = 0
    rows: int = 0
    load_seconds: float = 0.0
    score_seconds: float = 0.0
    started_at: float = 0.0  # wall clock (time.time) after loading and when done: comparable across processes
    finished_at: float = 0.0
    backoff: OomBackoff = field(default_factory=OomBackoff)  # out-of-memory splits, shared with the estimator's rule
    shards: list[int] = field(default_factory=list)
    late_shards: list[int] = field(default_factory=list)  # not started: past the deadline
    # where the worker's model was opened: its device and process, and where its weights are (a model opened
    # elsewhere and passed along would show another process or device here)
    device: str = ""
    pid: int = 0
    weights_on: str | None = None
    attention: str | None = None
    opened_in: int | None = None  # the process that opened the model (this worker's own, unless passed along)

    @property
    def oom_splits(self) -> int:
        return self.backoff.splits


class WorkerFailed(RuntimeError):
    pass


def parse_devices(text: str, local: bool = True) -> list[str]:
    """One entry per worker: "cpu", "cpu:4" (four CPU workers), "cuda:0,cuda:1", "cuda" (every visible GPU), or
    "gpu:N" (N GPU workers: cuda:0 … cuda:N-1 here).

    With `local` off (the Ray engine) GPUs are counted, not looked up: a driver without GPUs places GPU actors on
    the cluster's GPU nodes, and Ray gives each its own. There "cuda" and "cuda:K" are one GPU worker each.
    """
    devices: list[str] = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "cpu":
            devices.append("cpu")
        elif m := re.fullmatch(r"cpu:(\d+)", part):
            devices += ["cpu"] * int(m.group(1))
        elif m := re.fullmatch(r"gpu:(\d+)", part):
            devices += [f"cuda:{i}" for i in range(int(m.group(1)))]
        elif part == "cuda" and local:
            import torch

            devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        elif part == "cuda" or re.fullmatch(r"cuda:\d+", part):
            devices.append(part if local else f"cuda:{len([d for d in devices if d.startswith('cuda')])}")
        else:
            raise InputError(f"unknown device {part!r} (use cpu, cpu:N, cuda, cuda:0,cuda:1, or gpu:N)")
    if not devices:
        raise InputError(f"no devices in {text!r} (no CUDA device visible here)" if "cuda" in text else f"no devices in {text!r}")
    if local and any(d.startswith("cuda") for d in devices):
        import torch

        count = torch.cuda.device_count()
        missing = [d for d in devices if int(d.split(":")[1]) >= count]
        if missing:
            raise InputError(
                f"device {missing[0]} is not visible ({count} CUDA devices here; a Ray cluster's GPUs: --engine ray)"
            )
    return devices


def group_devices(devices: list[str], per_worker: int) -> list[str]:
    """GPUs joined into workers of `per_worker` each ("cuda:0+cuda:1"), for tensor parallelism; CPUs stay single."""
    if per_worker == 1:
        return devices
    gpus = [d for d in devices if d.startswith("cuda")]
    if len(gpus) != len(devices) or len(gpus) % per_worker:
        raise InputError(f"tensor parallelism {per_worker} needs GPUs in multiples of {per_worker}, got {', '.join(devices)}")
    return ["+".join(gpus[i : i + per_worker]) for i in range(0, len(gpus), per_worker)]


def threads_per_worker(n_workers: int, threads: int | None) -> int:
    return threads or max(1, (os.cpu_count() or 1) // n_workers)


def run_shards(backend: Backend, jobs: list[ShardJob], device: str, report: Report, stats: WorkerStats) -> WorkerStats:
    """Scores each shard and writes it atomically, sealed, before starting the next, so a crash loses one shard at most.

    A backend that schedules its own batches (vLLM: `schedules_itself`) gets each shard in one call; any other gets
    the plan's token-budget batches, split on out of memory (`score_with_backoff`)."""
    whole = getattr(backend, "schedules_itself", False)
    for job in jobs:
        if job.deadline is not None and time.time() >= job.deadline:
            stats.late_shards.append(job.index)  # the time budget is spent: left on disk unscored, for a rerun
            continue
        start = time.perf_counter()
        if whole:
            probs = [as_probabilities(backend.score([s for batch in job.sequences for s in batch]))]
            report(("batch", job.rows, job.tokens))
        else:
            probs = []
            for sequences in job.sequences:
                probs.append(score_with_backoff(lambda b: as_probabilities(backend.score(b)), sequences, device, stats.backoff))
                report(("batch", len(sequences), padded_size(sequences)))
        stats.score_seconds += time.perf_counter() - start
        stats.batches += 1 if whole else len(job.items)
        stats.rows += job.rows
        frame = prediction_frame(job.ids, np.concatenate(probs), item=np.concatenate(job.items), swapped=job.swapped)
        write_sealed(job.path, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False), job.made_for)
        stats.shards.append(job.index)
        report(("shard", job.index))
    return stats


def open_and_run(factory: BackendFactory, device: str, threads: int, jobs: list[ShardJob], report: Report) -> WorkerStats:
    stats = WorkerStats(device=device, pid=os.getpid())
    start = time.perf_counter()
    backend = factory(device, threads)
    stats.load_seconds = time.perf_counter() - start
    stats.weights_on, stats.attention = getattr(backend, "weights_on", None), getattr(backend, "attention", None)
    stats.opened_in = getattr(backend, "opened_in", None)
    stats.started_at = time.time()
    run_shards(backend, jobs, device, report, stats)
    stats.finished_at = time.time()
    return stats


def worker_placement(factory: BackendFactory, device: str, parent_visible: str | None) -> tuple[dict[str, str], str]:
    """(environment of the worker process, device name inside it) for a worker on `device`.

    A vLLM worker sees its GPU alone, mapped through the parent's CUDA_VISIBLE_DEVICES (`parent_visible`), and
    names it cuda:0; any other worker keeps the parent's numbering.
    """
    if device.startswith("cuda") and pins_visible_device(factory):
        local = "+".join(f"cuda:{i}" for i in range(len(device.split("+"))))  # its GPUs as it sees them
        return {"CUDA_VISIBLE_DEVICES": visible_device_for(device, parent_visible)}, local
    return {}, device


class _Terminated(BaseException):
    """SIGTERM in a worker: raised wherever it is, so that it stops its children and exits."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def _worker_main(
    worker: int, factory: BackendFactory, device: str, threads: int, jobs: list[ShardJob], queue, env: dict[str, str]
) -> None:
    os.environ.update(env)  # first of all: CUDA reads CUDA_VISIBLE_DEVICES when it starts, vLLM when imported
    signal.signal(signal.SIGTERM, _raise_terminated)
    _exit_with_parent()

    def report(message: tuple) -> None:
        queue.put((worker, *message))

    try:
        _quiet_progress_bars()
        stats = open_and_run(factory, device, threads, jobs, report)
    except _Terminated:
        queue.cancel_join_thread()  # the parent no longer reads: exit without waiting to flush the queue
        _stop_children()
        raise SystemExit(128 + signal.SIGTERM) from None
    except InputError as err:
        queue.put((worker, "error", "input", str(err)))
        raise SystemExit(1) from None
    except BaseException:
        queue.put((worker, "error", "crash", traceback.format_exc()))
        raise SystemExit(1) from None
    queue.put((worker, "done", stats))


def _exit_with_parent() -> None:
    """A worker whose parent dies without stopping it (SIGKILL, the out-of-memory killer) sends itself SIGTERM,
    the parent's own way of stopping it; a non-daemonic orphan would otherwise hold its GPU on."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns once the parent's end of the start-up pipe closes: when it exits
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _stop_children(grace: float = STOP_GRACE_SECONDS) -> None:
    """Terminates the processes this one started (vLLM's engine core among them), killing what outlives `grace`."""
    stop_processes(mp.active_children(), grace)


def stop_processes(procs: list, grace: float = STOP_GRACE_SECONDS, finished: frozenset = frozenset()) -> None:
    """Stops and reaps started processes: those in `finished` (about to exit on their own) get `grace` seconds
    first; the rest are terminated (SIGTERM) at once and get `grace` seconds to stop; whatever is left is killed."""
    deadline = time.monotonic() + grace
    for proc in procs:
        if proc in finished:
            proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            log.warning("process %s (pid %s) did not stop within %.0f s of SIGTERM: killing it", proc.name, proc.pid, grace)
            proc.kill()
            proc.join()


def _quiet_progress_bars() -> None:
    """No model-loading bars in workers: the parent shows progress, and a bar's lock is a semaphore the
    worker's hard exit would leave behind (a "leaked semaphore" warning at the end of every run)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While workers run, SIGTERM to this process (a scheduler's stop, `kill`) raises SystemExit, so the `finally`
    that stops the workers runs. Only where SIGTERM still has its default action, and in the main thread."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_workers(
    factory: BackendFactory, devices: list[str], threads: int, jobs: list[list[ShardJob]], on_message: Report
) -> list[WorkerStats]:
    """Runs `jobs[w]` on `devices[w]`; `on_message` sees every progress message in this process."""
    own_process = pins_visible_device(factory)  # vLLM: its GPU pinned before CUDA starts, so never in this process
    if len(devices) == 1 and not own_process:
        return [open_and_run(factory, devices[0], threads, jobs[0], lambda message: on_message((0, *message)))]
    context = mp.get_context("spawn")
    parent_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    placements = {w: worker_placement(factory, devices[w], parent_visible) for w in range(len(devices))}
    queue = context.Queue()
    procs = {  # a worker with nothing left to score (a rerun) is not started: loading a model costs minutes
        w: context.Process(
            target=_worker_main,
            args=(w, factory, placements[w][1], threads, jobs[w], queue, placements[w][0]),
            name=f"inference-worker-{w}",
            daemon=False,  # may start processes of its own (vLLM's engine core); stopped in `finally` below
        )
        for w in range(len(devices))
        if jobs[w]
    }
    started: list = []
    stats: dict[int, WorkerStats] = {}
    errors: list[tuple] = []
    try:
        with _sigterm_raises():
            for proc in procs.values():
                proc.start()
                started.append(proc)
            stats, errors = _collect(procs, queue, on_message)
    finally:
        heard = set(stats) | {e[0] for e in errors}
        stop_processes(started, finished=frozenset(procs[w] for w in heard))
        queue.close()
    _raise_failures(procs, devices, stats, errors)
    return [stats.get(w, WorkerStats()) for w in range(len(devices))]


def _collect(procs: dict, queue, on_message: Report, grace: float = 2.0) -> tuple[dict[int, WorkerStats], list[tuple]]:
    """Messages until every worker has said "done" or "error", or has exited silently (killed).

    A failed worker does not stop the others: every shard they finish is kept for the rerun. A worker
    seen exited without a last word gets `grace` seconds for its final messages to arrive.
    """
    stats: dict[int, WorkerStats] = {}
    errors: list[tuple] = []
    exited_at: dict[int, float] = {}
    while True:
        heard = set(stats) | {e[0] for e in errors}
        unheard = [w for w in procs if w not in heard]
        for w in unheard:
            if procs[w].exitcode is not None:
                exited_at.setdefault(w, time.monotonic())
        if all(w in exited_at and time.monotonic() - exited_at[w] > grace for w in unheard):
            return stats, errors
        try:
            _dispatch(queue.get(timeout=0.2), stats, errors, on_message)
        except queue_module.Empty:
            pass


def _dispatch(message: tuple, stats: dict, errors: list, on_message: Report) -> None:
    worker, kind = message[0], message[1]
    if kind == "done":
        stats[worker] = message[2]
    elif kind == "error":
        errors.append(message)
    else:
        on_message(message)


def _raise_failures(procs: dict, devices: list[str], stats: dict, errors: list) -> None:
    for worker, _, kind, text in errors:
        if kind == "input":
            raise InputError(f"worker {worker} on {devices[worker]}: {text}")
        raise WorkerFailed(f"worker {worker} on {devices[worker]} failed; finished shards are kept, rerun to resume:\n{text}")
    for worker, proc in procs.items():
        if worker not in stats:
            raise WorkerFailed(
                f"worker {worker} on {devices[worker]} exited with code {proc.exitcode}; finished shards are kept, rerun to resume"
            )
