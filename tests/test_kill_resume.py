"""kill -9 at a bad moment, then the same command again: `infer` finishes only the missing shards and writes what an
uninterrupted run writes, `train-p2l` gives a byte-identical oof.parquet, and a killed `features --engine ray` leaves
no Ray process behind.

Each command runs as a real process (its own process group) and is killed with SIGKILL, which leaves it no chance to
clean up. To kill at a known moment, the process is started through a small launcher that slows or parks one step
(scoring a batch, the fold after the first); what is killed is the real command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from competition.rundir import SEALED, seal_state
from tests.conftest import make_arena_frame
from tests.test_inference_engine import MAX_LENGTH, make_frame, model_dir, write_arena_csv  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "HOME": "/tmp"}
# Launchers: each patches one step of the command in its own process, then runs the CLI as `python -m competition` does.
SLOW_BATCHES = """
import sys, time
import inference.backends as backends
score = backends.TransformersBackend.score
backends.TransformersBackend.score = lambda self, sequences: (time.sleep(0.3), score(self, sequences))[1]
from cli import main
sys.exit(main(sys.argv[1:]))
"""
PARK_AFTER_FIRST_FOLD = """
import sys, time
from competition.crossfit import FoldStore
save = FoldStore.save
def save_then_park(self, fold, *args, **kwargs):
    save(self, fold, *args, **kwargs)
    time.sleep(600)  # killed here: fold 0 is committed, the others are not
FoldStore.save = save_then_park
from cli import main
sys.exit(main(sys.argv[1:]))
"""


def launch(launcher: str, argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", launcher, *argv],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the command ended (exit {process.returncode}) before the kill: {process.stderr.read()}")
        assert time.monotonic() < deadline, "the command never reached the moment of the kill"
        time.sleep(0.1)


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "competition", *argv], cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


# ------------------------------------------------------------------------------------------------------------- infer


def test_a_killed_infer_resumes_with_the_missing_shards_and_writes_what_a_whole_run_writes(model_dir, tmp_path):  # noqa: F811
    model = model_dir
    csv = write_arena_csv(make_frame(60), tmp_path / "test.csv")
    argv = ["infer", "--model-path", str(model), "--test", str(csv), "--max-length", str(MAX_LENGTH), "--devices", "cpu"]
    argv += ["--token-budget", "600", "--set", "batching.shard_rows=1", "--set", "workers.threads=1", "--dtype", "float32"]
    shards = tmp_path / "killed" / "infer_shards"

    def sealed_shards() -> list[Path]:
        return [p for p in sorted(shards.glob("shard-*.parquet")) if seal_state(p, None) == SEALED]

    process = launch(SLOW_BATCHES, [*argv, "--out", str(tmp_path / "killed")], tmp_path)
    wait_for(lambda: len(sealed_shards()) >= 3, process)
    kill_group(process)
    finished = {p: p.stat().st_mtime_ns for p in sealed_shards()}
    total = json.loads((shards / "plan.json").read_text())["shards"]
    assert 3 <= len(finished) < total, "killed half-way: some shards done, some not"
    assert not (tmp_path / "killed" / "manifest.json").exists()

    run_cli([*argv, "--out", str(tmp_path / "killed")], tmp_path)  # the folder of a run in progress is resumed
    summary = json.loads((tmp_path / "killed" / "infer_summary.json").read_text())
    assert summary["shards_skipped"] >= len(finished) and summary["shards_scored"] == total - summary["shards_skipped"]
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in finished.items()), "a finished shard was scored again"

    run_cli([*argv, "--out", str(tmp_path / "whole")], tmp_path)
    killed, whole = tmp_path / "killed" / "test.parquet", tmp_path / "whole" / "test.parquet"
    assert killed.read_bytes() == whole.read_bytes()


# --------------------------------------------------------------------------------------------------------- train-p2l


def test_a_killed_train_p2l_resumes_to_a_byte_identical_oof(tmp_path):
    from tests.test_p2l_cli import sets, write_inputs

    write_inputs(tmp_path)
    argv = ["train-p2l", "--train", str(tmp_path / "battles.csv"), "--folds", "3", *sets(tmp_path)]
    killed = tmp_path / "runs" / "killed"
    process = launch(PARK_AFTER_FIRST_FOLD, [*argv, "--out", str(killed)], tmp_path)
    wait_for(lambda: (killed / "folds" / "fold0" / "manifest.json").exists(), process)
    kill_group(process)
    assert not (killed / "folds" / "fold1").exists() and not (killed / "oof.parquet").exists()

    run_cli([*argv, "--out", str(killed)], tmp_path)
    run_cli([*argv, "--out", str(tmp_path / "runs" / "whole")], tmp_path)
    for name in ("oof.parquet", "coefficients.parquet"):
        assert (killed / name).read_bytes() == (tmp_path / "runs" / "whole" / name).read_bytes(), name


# --------------------------------------------------------------------------------------------------------- features


def test_a_killed_ray_features_build_leaves_no_process_behind_and_resumes(tmp_path):
    pytest.importorskip("ray")
    import psutil

    path = tmp_path / "train.csv"
    make_arena_frame(n_prompts=40, rows_per_prompt=3, seed=6).to_csv(path, index=False)
    argv = ["features", "--train", str(path), "--out", str(tmp_path / "feat"), "--rows-per-block", "3"]
    process = subprocess.Popen(
        [sys.executable, "-m", "competition", *argv, "--engine", "ray"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parts = tmp_path / "feat" / "parts"
    wait_for(lambda: any(seal_state(p, None) == SEALED for p in parts.glob("part-*.parquet")), process)
    driver = psutil.Process(process.pid)
    spawned = [(p, p.create_time()) for p in driver.children(recursive=True)]
    assert spawned, "the driver started a local Ray instance"
    process.kill()  # SIGKILL to the driver alone: its Ray processes must not outlive it
    process.wait()

    def left() -> list[str]:
        alive = []
        for child, created in spawned:
            try:
                if child.create_time() == created and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(" ".join(child.cmdline())[:120])
            except psutil.Error:
                pass
        return alive

    deadline = time.monotonic() + 60
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left() == []
    run_cli(argv, tmp_path)  # here, in this process: the parts built before the kill are kept
    summary = json.loads((tmp_path / "feat" / "summary.json").read_text())
    assert summary["skipped"] >= 1 and summary["built"] + summary["skipped"] == summary["parts"]


def test_the_fold_basis_follows_settings_data_and_the_runs_read_not_where_the_run_goes(tmp_path):
    """What decides whether a finished fold may be reused: its settings, its data files' contents and the runs it
    reads (a teacher), not its name, its output folder or how a call is driven (a killed run resumes without them)."""
    from competition.config import load_config
    from competition.rundir import RunKind, staged_unit
    from stages.training import fold_basis, training_config

    train, teacher = tmp_path / "train.csv", tmp_path / "teacher"
    train.write_text("id\n1\n", encoding="utf-8")
    with staged_unit(teacher, RunKind.CV, {"made": 1}):
        pass

    def basis(*overrides: str) -> str:
        cfg = load_config(
            training_config("transformer"),
            "configs/transformer/minilm.toml",
            [f"data.train={str(train)!r}", 'data.test=""', f"train.teacher={str(teacher)!r}", *overrides],
        )
        return fold_basis(cfg)

    first = basis()
    assert basis("name='elsewhere'", f"out={str(tmp_path / 'o')!r}", "train.stop_after_steps=3", "train.num_threads=1") == first
    assert basis("train.learning_rate=0.001") != first
    train.write_text("id\n2\n", encoding="utf-8")  # same path, other contents
    second = basis()
    assert second != first
    shutil.rmtree(teacher)
    with staged_unit(teacher, RunKind.CV, {"made": 2}):  # the teacher run rebuilt in place
        pass
    assert basis() != second
