"""Data-parallel training through torch.distributed, as `torchrun` launches it.

`torchrun --nproc-per-node N -m competition train-transformer ...` starts N copies of the command with
RANK, LOCAL_RANK and WORLD_SIZE set; `join()` turns them into one process group (NCCL on CUDA, gloo on
CPU) and gives each rank its device. Every rank builds the same model from the same seed (with 4-bit
QLoRA each holds its own quantized copy), runs its share of each optimizer step's micro-batches, and
DistributedDataParallel averages the gradients. Prediction is shared the same way (`sharded_predict`): each
rank scores 1/world of the rows, balanced by length, and every rank gets them all back. Rank 0 alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_ranks() -> Ranks:
    """The ranks torchrun announced in the environment (one process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def join(device_name: str = "auto") -> Ranks:
    """Initialises the process group once when launched by torchrun with WORLD_SIZE > 1."""
    ranks = launched_ranks()
    if ranks.world > 1 and not torch.distributed.is_initialized():
        cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(ranks.local_rank)
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return ranks


def current_ranks() -> Ranks:
    """The ranks of the initialised process group, or a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(), launched_ranks().local_rank)
    return Ranks()


def barrier() -> None:
    if current_ranks().world > 1:
        torch.distributed.barrier()


def mean_over_ranks(value: float, device: torch.device) -> float:
    if current_ranks().world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / current_ranks().world


def gather_objects(value) -> list:
    """`value` of every rank, in rank order (one element without a process group)."""
    ranks = current_ranks()
    if ranks.world == 1:
        return [value]
    out = [None] * ranks.world
    torch.distributed.all_gather_object(out, value)
    return out


def leave() -> None:
    """Ends the process group this process joined (torchrun expects every rank to)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def sharded_predict(estimator, frame) -> np.ndarray:
    """`estimator.predict_proba(frame)` with the rows shared among the ranks of the process group: rank r scores
    every world-th row in order of decreasing text length (so each gets about the same tokens), and the
    probabilities of all ranks come back to every rank in row order. Without a process group, the plain call."""
    ranks = current_ranks()
    if ranks.world == 1:
        return estimator.predict_proba(frame)
    columns = [c for c in ("prompt", "response_a", "response_b") if c in frame.columns]
    lengths = frame[columns].map(lambda turns: sum(len(t or "") for t in turns)).sum(axis=1).to_numpy() if columns else None
    order = np.argsort(-lengths, kind="stable") if lengths is not None else np.arange(len(frame))
    mine = np.sort(order[ranks.rank :: ranks.world])
    probs = estimator.predict_proba(frame.iloc[mine]) if len(mine) else np.zeros((0, 3))
    out = np.full((len(frame), 3), np.nan)
    for rows, part in gather_objects((mine, np.asarray(probs, dtype=np.float64))):
        out[rows] = part
    return out
