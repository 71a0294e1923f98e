"""The same plan and shards, executed on a Ray cluster: one actor per device holding the model, shards handed
out one at a time to whichever actor is free, each shard written atomically to storage every node sees.

Nothing about the plan changes: the shards, their fingerprints and the merge are the local engine's, so a run
may start on one engine and finish on the other. An actor whose process dies (a node lost, kill -9) is
restarted by Ray and its shard retried; if the retries run out, the run stops, and a rerun scores only the
shards not yet on disk.

`address` as in competition/cluster.py; on a cluster the shard folder must be on storage every node sees.
"""

from __future__ import annotations

import logging
import time

from competition.cluster import connect
from inference.workers import BackendFactory, Report, ShardJob, WorkerStats, run_shards

log = logging.getLogger(__name__)

ACTOR_RESTARTS = 3  # per actor: how often Ray brings it back after its process dies
TASK_RETRIES = 3  # per shard: how often a shard cut short by a dead actor is tried again


class ShardWorker:
    """A Ray actor: opens the backend once on its device, then scores whole shards on request."""

    def __init__(self, factory: BackendFactory, device: str, threads: int | None):
        self.device = device
        self.stats = WorkerStats()
        start = time.perf_counter()
        self.backend = factory(device, threads)
        self.stats.load_seconds = time.perf_counter() - start
        self.stats.started_at = time.time()

    def score(self, job: ShardJob) -> tuple[int, int, int, float, float]:
        """(shard index, rows, padded tokens, scoring seconds, finished at) after the shard is on disk."""
        stats = WorkerStats()
        run_shards(self.backend, [job], self.device, lambda message: None, stats)
        return job.index, job.rows, job.tokens, stats.score_seconds, time.time()

    def load_facts(self) -> tuple[float, float]:
        return self.stats.load_seconds, self.stats.started_at


def actor_placement(device: str, threads: int) -> tuple[dict, str]:
    """(Ray resources, device name inside the actor) of a worker. GPUs are asked for as a count, never by index: Ray
    gives the actor its own CUDA_VISIBLE_DEVICES on whichever node has them free, so inside it they are cuda:0…"""
    if not device.startswith("cuda"):
        return {"num_cpus": threads}, "cpu"
    gpus = len(device.split("+"))
    return {"num_gpus": gpus, "num_cpus": 1}, "+".join(f"cuda:{i}" for i in range(gpus))


def run_ray_workers(
    factory: BackendFactory, devices: list[str], threads: int, jobs: list[list[ShardJob]], on_message: Report, address: str = ""
) -> list[WorkerStats]:
    """Scores every job's shard on actors, one per entry of `devices`; shards go to whichever actor is free."""
    ray = connect(address, max(len(devices) * threads, 1))
    from ray.util import ActorPool

    remote = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES)(ShardWorker)
    actors = []
    for device in devices:
        options, inside = actor_placement(device, threads)
        actors.append(remote.options(**options).remote(factory, inside, threads))
    pending = [job for worker_jobs in jobs for job in worker_jobs]
    stats = [WorkerStats() for _ in devices]
    pool = ActorPool(actors)
    try:
        for index, rows, tokens, seconds, finished in pool.map_unordered(lambda actor, job: actor.score.remote(job), pending):
            on_message((0, "batch", rows, tokens))
            on_message((0, "shard", index))
            stats[0].rows += rows
            stats[0].score_seconds += seconds
            stats[0].shards.append(index)
            stats[0].finished_at = max(stats[0].finished_at, finished)
    except ray.exceptions.RayError as err:
        raise RuntimeError(f"the Ray run stopped ({type(err).__name__}); finished shards are kept, rerun to resume") from err
    facts = ray.get([actor.load_facts.remote() for actor in actors])
    stats[0].load_seconds = max(f[0] for f in facts)
    stats[0].started_at = min(f[1] for f in facts)
    for actor in actors:
        ray.kill(actor)
    return stats
