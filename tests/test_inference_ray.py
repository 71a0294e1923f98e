"""`infer --engine ray` on a local Ray instance (2 CPU actors): the same probabilities as the local engine, and a
run whose actor is killed (kill -9) mid-run finishes with the same output; a rerun scores only missing shards."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_inference_engine import keep_torch_threads, make_cfg, make_frame, model_dir, tokenizer  # noqa: F401

from inference.config import WorkerConfig
from inference.engine import infer_frame
from tests.ray_helpers import DiesOnce

ray = pytest.importorskip("ray", reason="the ray engine needs ray (requirements.txt)")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from competition.cluster import connect

    if ray.is_initialized():  # an earlier in-process command may have started Ray with fewer CPUs: two actors need two
        ray.shutdown()
    connect("", 2)
    yield
    ray.shutdown()


def ray_cfg(model_dir):  # noqa: F811
    cfg = make_cfg(model_dir)
    return replace(cfg, workers=WorkerConfig(devices="cpu,cpu", threads=1, engine="ray"))


def test_the_ray_engine_gives_the_local_engines_probabilities(model_dir, tokenizer, tmp_path):  # noqa: F811
    frame = make_frame(40)
    local, _ = infer_frame(frame, tokenizer, make_cfg(model_dir), tmp_path / "local", show_progress=False)
    on_ray, stats = infer_frame(frame, tokenizer, ray_cfg(model_dir), tmp_path / "ray", show_progress=False)
    assert np.abs(on_ray - local).max() <= 1e-6
    assert stats["shards_scored"] == stats["shards"] > 2
    again, stats = infer_frame(frame, tokenizer, ray_cfg(model_dir), tmp_path / "ray", show_progress=False)
    assert stats["shards_scored"] == 0 and np.array_equal(again, on_ray)  # a rerun finds every shard on disk


def test_an_actor_killed_mid_run_is_restarted_and_the_output_is_the_same(model_dir, tokenizer, tmp_path):  # noqa: F811
    frame = make_frame(40, seed=3)
    cfg = ray_cfg(model_dir)
    local, _ = infer_frame(frame, tokenizer, make_cfg(model_dir), tmp_path / "local", show_progress=False)
    factory = DiesOnce(cfg.backend_spec(), str(tmp_path / "killed.marker"))
    probs, stats = infer_frame(frame, tokenizer, cfg, tmp_path / "ray", factory=factory, show_progress=False)
    assert (tmp_path / "killed.marker").exists()  # an actor process did die
    assert np.abs(probs - local).max() <= 1e-6 and stats["shards_scored"] == stats["shards"]
