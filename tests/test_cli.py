"""End to end through the real CLI, on small synthetic files (no shared data)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from competition.rundir import write_manifest
from competition.submission import validate_submission
from tests.conftest import make_arena_frame

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--set",
    "lgbm.max_rounds=40",
    "--set",
    "lgbm.early_stopping_rounds=5",
    "--set",
    "lgbm.min_data_in_leaf=5",
    "--set",
    'features.groups=["lengths","markdown","refusal","duplicates"]',
]


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "competition", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


@pytest.fixture
def workdir(tmp_path):
    make_arena_frame(n_prompts=10, rows_per_prompt=5, seed=1).to_csv(tmp_path / "train.csv", index=False)
    make_arena_frame(n_prompts=3, rows_per_prompt=4, seed=2, labels=False, models=False).to_csv(
        tmp_path / "test.csv", index=False
    )
    return tmp_path


def test_cv_fit_predict_chain_on_test_without_labels_or_models(workdir):
    common = ["--train", "train.csv", "--set", "features.cache_dir='cache'", *QUICK]
    result = cli("cv", *common, "--test", "test.csv", "--out", "runs/a", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "out-of-fold" in result.stdout
    assert {"oof.parquet", "test.parquet", "config.toml", "cv_folds.csv"} <= {p.name for p in (workdir / "runs/a").iterdir()}
    assert cli("fit", *common, "--out", "runs/a", cwd=workdir).returncode == 0
    result = cli("predict", "--model", "runs/a", "--test", "test.csv", "--submission", "sub.csv", cwd=workdir)
    assert result.returncode == 0, result.stderr
    sub = pd.read_csv(workdir / "sub.csv", dtype={"id": str})
    validate_submission(sub, pd.read_csv(workdir / "test.csv", dtype={"id": str})["id"])


def test_run_main_job_and_ablate_and_blend(workdir):
    common = ["--train", "train.csv", "--test", "test.csv", "--folds", "3", *QUICK]
    result = cli("run", *common, "--set", "name='main'", "--set", "submissions_dir='subs'", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (workdir / "subs/main.csv").exists()
    other = cli("cv", *common, "--set", "name='other'", "--set", "lgbm.num_leaves=4", cwd=workdir)
    assert other.returncode == 0, other.stderr
    blend = cli(
        "blend", "--runs", "runs/main", "runs/other", "--out", "runs/blend", "--submission", "subs/blend.csv", cwd=workdir
    )
    assert blend.returncode == 0, blend.stderr
    assert "cross-fitted" in blend.stdout and (workdir / "subs/blend.csv").exists()
    assert "group" in pd.read_parquet(workdir / "runs/main/oof.parquet").columns
    one_fold = pd.read_parquet(workdir / "runs/other/oof.parquet")
    one_fold[one_fold["fold"] == 0].to_parquet(workdir / "runs/other/oof.parquet", index=False)
    argv = ("blend", "--runs", "runs/main", "runs/other", "--out", "runs/blend1", "--submission", "subs/blend1.csv")
    refused = cli(*argv, cwd=workdir)  # a hand-edited run no longer matches its manifest
    assert refused.returncode == 2 and "does not match the manifest" in refused.stderr and not (workdir / "runs/blend1").exists()
    write_manifest(workdir / "runs/other", "cv")  # as a one-fold run (e.g. train-transformer --only-folds) would be
    blend = cli(*argv, cwd=workdir)
    assert blend.returncode == 0, blend.stderr
    assert "prompt-grouped sub-folds" in blend.stdout
    ablate = cli(
        "ablate",
        *[a for a in common if a not in ("--test", "test.csv")],
        "--set",
        "name='main'",
        "--groups",
        "markdown",
        "refusal",
        cwd=workdir,
    )
    assert ablate.returncode == 0, ablate.stderr
    table = pd.read_csv(workdir / "runs/main/ablation/ablation.csv")
    assert list(table["dropped"]) == ["(none)", "markdown", "refusal"]
    assert (workdir / "runs/main/ablation/ablation.png").stat().st_size > 1000


def _malformed(workdir):
    good = pd.read_csv(workdir / "test.csv", dtype=str)
    dup = good.copy()
    dup.loc[2, "id"] = dup.loc[1, "id"]
    labels = make_arena_frame(n_prompts=2, rows_per_prompt=3).astype(str)
    labels.loc[1, "winner_model_b"] = "1"
    return {
        "missing_column.csv": (good.drop(columns=["response_a"]), "column 'response_a'"),
        "duplicate_id.csv": (dup, "row 3, column 'id'"),
        "not_csv.csv": ("\x00\x01PK\x03\x04 zip bytes", "not a CSV"),
        "empty.csv": ("", "empty"),
        "labels.csv": (labels, "row 2"),
    }


@pytest.mark.parametrize("name", ["missing_column.csv", "duplicate_id.csv", "not_csv.csv", "empty.csv", "labels.csv"])
def test_malformed_input_one_line_error_no_output(workdir, name):
    content, expected = _malformed(workdir)[name]
    path = workdir / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        content.to_csv(path, index=False)
    assert cli("fit", "--train", "train.csv", "--out", "runs/m", *QUICK, cwd=workdir).returncode == 0
    (workdir / "out.csv").write_text("earlier submission")
    if name == "labels.csv":
        result = cli("cv", "--train", name, "--test", "test.csv", "--out", "runs/bad", cwd=workdir)
        assert not (workdir / "runs/bad").exists()
    else:
        result = cli("predict", "--model", "runs/m", "--test", name, "--submission", "out.csv", cwd=workdir)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and expected in lines[0], result.stderr
    assert (workdir / "out.csv").read_text() == "earlier submission"
    assert not list(workdir.glob("*.tmp")) and not list(workdir.glob(".*.tmp"))


def test_unknown_config_key_is_a_one_line_error(workdir):
    result = cli("cv", "--train", "train.csv", "--set", "lgbm.bogus=1", cwd=workdir)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "bogus" in result.stderr
