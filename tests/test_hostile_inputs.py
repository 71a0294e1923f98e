"""Hostile inputs over every training/prediction command: bad files, outputs aimed at inputs, settings out of
range, flags a command does not honour, damaged model folders and blend inputs.

The promise under test, for every case: exactly one line on stderr (naming the file, and the row/column when
the problem is inside a data file), exit code 2, no traceback, nothing written (no new run directory or
submission, no *.tmp / *.staging left over), every file that existed before byte-identical afterwards, and
so no output ever written over or inside an input. Settings are checked before any data is read (a tripwire
replaces the CSV loader). Calls go through `cli.main` in-process; a few run as real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli import main
from competition.rundir import write_manifest
from tests.conftest import make_arena_frame

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--set",
    "lgbm.max_rounds=20",
    "--set",
    "lgbm.early_stopping_rounds=5",
    "--set",
    "lgbm.min_data_in_leaf=5",
    "--set",
    "lgbm.num_threads=1",
    "--set",
    'features.groups=["lengths","markdown"]',
    "--set",
    "features.cache_dir=''",
]
HF_MODEL = "hf_model"  # a folder that passes the model folder checks (config.json, empty weights); no case loads it
PREV_SUB = "submissions/prev.csv"  # a pre-existing submission that no refused command may touch
# Fold tables are complete, reusable files keyed by the data (not run outputs): tolerated, and listed.
FOLD_TABLE_PREFIX = "runs/folds/folds-"


# ---------------------------------------------------------------------------------------------- workspace


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Train/test files, two cv runs (with test predictions) and a fitted model, made once per module."""
    root = tmp_path_factory.mktemp("hostile_base")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        make_arena_frame(n_prompts=8, rows_per_prompt=4, seed=1).to_csv("train.csv", index=False)
        make_arena_frame(n_prompts=3, rows_per_prompt=3, seed=2, labels=False, models=False).to_csv("test.csv", index=False)
        common = ["--train", "train.csv", "--test", "test.csv", "--folds", "3", *QUICK]
        assert main(["cv", *common, "--out", "runs/a"]) == 0
        assert main(["cv", *common, "--out", "runs/b", "--set", "lgbm.num_leaves=4"]) == 0
        assert main(["fit", "--train", "train.csv", "--out", "runs/m", *QUICK]) == 0
        Path(HF_MODEL).mkdir()
        Path(HF_MODEL, "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
        Path(HF_MODEL, "model.safetensors").write_bytes(b"\x02" + bytes(7) + b"{}")  # a valid, empty safetensors file
        Path("inputs").mkdir()
        shutil.copy("train.csv", "inputs/train.csv")
        Path("submissions").mkdir()
        Path(PREV_SUB).write_text("id,winner_model_a,winner_model_b,winner_tie\nearlier,0.2,0.3,0.5\n", encoding="utf-8")
    return root


def snapshot(root: Path) -> tuple[dict[str, str], set[str]]:
    files, dirs = {}, set()
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            files[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            dirs.add(rel)
        else:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, dirs


@dataclass
class Outcome:
    rc: int
    err: str
    extra: list[str]  # log records and Python warnings: on stderr in a real run

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()] + self.extra


class Workspace:
    def __init__(self, root: Path, capsys, caplog):
        self.root, self.capsys, self.caplog = root, capsys, caplog

    def path(self, rel: str) -> Path:
        return self.root / rel

    def call(self, argv: list[str]) -> Outcome:
        self.capsys.readouterr()
        self.caplog.clear()
        self.caplog.set_level(logging.INFO)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rc = main(list(argv))
            except SystemExit as done:  # the top-level parser exits by itself (unknown command)
                rc = done.code if isinstance(done.code, int) else 2
        err = self.capsys.readouterr().err
        extra = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.caplog.records if r.levelno >= logging.INFO]
        extra += [f"{w.category.__name__}: {w.message}" for w in caught]
        return Outcome(rc, err, extra)

    def refused(self, argv: list[str], *expected: str) -> Outcome:
        """Runs argv and asserts the whole promise; returns the outcome for further checks."""
        files, dirs = snapshot(self.root)
        outcome = self.call(argv)
        shown = "\n".join(outcome.lines)
        assert "Traceback" not in outcome.err, shown
        assert outcome.rc == 2, f"exit {outcome.rc}, stderr:\n{shown}"
        assert len(outcome.lines) == 1, f"expected one line on stderr, got:\n{shown}"
        line = outcome.lines[0]
        assert line.startswith("error:"), line
        for text in expected:
            assert text in line, f"{text!r} not in {line!r}"
        after_files, after_dirs = snapshot(self.root)
        changed = sorted(k for k in files if k in after_files and after_files[k] != files[k])
        removed = sorted(set(files) - set(after_files))
        new = sorted(k for k in set(after_files) - set(files) if not k.startswith(FOLD_TABLE_PREFIX))
        new_dirs = sorted(after_dirs - dirs)
        assert not changed, f"pre-existing files changed: {changed}"
        assert not removed, f"pre-existing files removed: {removed}"
        assert not new and not new_dirs, f"written although refused: {new + new_dirs}"
        leftovers = [k for k in after_files if k.endswith((".tmp", ".staging", ".old"))]
        assert not leftovers, leftovers
        return outcome


@pytest.fixture
def ws(base, tmp_path, monkeypatch, capsys, caplog):
    root = tmp_path / "ws"
    shutil.copytree(base, root, symlinks=True)
    monkeypatch.chdir(root)
    return Workspace(root, capsys, caplog)


@pytest.fixture
def tripwire(monkeypatch):
    """Any CSV read fails the case: settings must be refused before data is loaded (and so before training)."""
    import data.labelled
    import data.loader
    import stages.training

    def boom(*args, **kwargs):
        raise AssertionError("tripwire: a data file was read before the settings were checked")

    monkeypatch.setattr(data.loader, "load_arena_csv", boom)
    monkeypatch.setattr(data.labelled, "load_arena_csv", boom)
    monkeypatch.setattr(stages.training, "scan_prompt_chunks", boom)  # predict reads the test file in chunks


@pytest.fixture
def no_training(monkeypatch):
    import models.lgbm

    def boom(*args, **kwargs):
        raise AssertionError("tripwire: training started although the input is bad")

    monkeypatch.setattr(models.lgbm.LGBMPreference, "fit", boom)


# ---------------------------------------------------------------------------------------------- data files

BAD = "bad.csv"


def write_variant(kind: str, path: Path) -> None:
    frame = make_arena_frame(n_prompts=8, rows_per_prompt=4, seed=3)
    if kind == "missing":
        return
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    elif kind == "utf16":
        frame.to_csv(path, index=False, encoding="utf-16")
    elif kind == "header_only":
        frame.head(0).to_csv(path, index=False)
    elif kind == "missing_column":
        frame.drop(columns=["response_a"]).to_csv(path, index=False)
    elif kind == "duplicate_id":
        frame.loc[2, "id"] = frame.loc[1, "id"]
        frame.to_csv(path, index=False)
    elif kind == "empty_id":
        frame.loc[1, "id"] = ""
        frame.to_csv(path, index=False)
    elif kind == "not_one_hot":
        frame.loc[1, ["winner_model_a", "winner_model_b", "winner_tie"]] = 1
        frame.to_csv(path, index=False)
    elif kind == "bad_label":
        frame = frame.astype({"winner_model_a": object})
        frame.loc[4, "winner_model_a"] = "yes"
        frame.to_csv(path, index=False)
    elif kind == "directory":
        path.mkdir()
        frame.to_csv(path / "train.csv", index=False)
    else:
        raise ValueError(kind)


VARIANTS = {
    "missing": ("not found",),
    "empty": ("empty",),
    "binary": ("binary",),
    "utf16": ("UTF-16",),
    "header_only": ("no rows",),
    "missing_column": ("column 'response_a'",),
    "duplicate_id": ("row 3", "column 'id'"),
    "empty_id": ("row 2", "column 'id'"),
    "not_one_hot": ("row 2", "column 'winner_model_a'"),
    "bad_label": ("row 5", "column 'winner_model_a'"),
    "directory": (),
}
SLOTS = {
    "cv:train": ["cv", "--train", BAD, "--test", "test.csv", "--out", "runs/a", *QUICK],
    "cv:test": ["cv", "--train", "train.csv", "--test", BAD, "--out", "runs/a", *QUICK],
    "cv:extra": ["cv", "--train", "train.csv", "--test", "test.csv", "--set", f"data.extra='{BAD}'", *QUICK],
    "fit:train": ["fit", "--train", BAD, "--out", "runs/m", *QUICK],
    "predict:test": ["predict", "--model", "runs/m", "--test", BAD, "--submission", PREV_SUB],
    "run:train": ["run", "--train", BAD, "--test", "test.csv", "--out", "runs/a", "--submission", PREV_SUB, *QUICK],
    "run:test": ["run", "--train", "train.csv", "--test", BAD, "--out", "runs/a", "--submission", PREV_SUB, *QUICK],
    "ablate:train": ["ablate", "--train", BAD, "--out", "runs/a", *QUICK],
    "train-transformer:train": [
        "train-transformer",
        "--train",
        BAD,
        "--test",
        "test.csv",
        "--out",
        "runs/tt",
        "--set",
        f"model.model_path='{HF_MODEL}'",
    ],
    "train-transformer:test": [
        "train-transformer",
        "--train",
        "train.csv",
        "--test",
        BAD,
        "--out",
        "runs/tt",
        "--set",
        f"model.model_path='{HF_MODEL}'",
    ],
    "infer:test": ["infer", "--test", BAD, "--model-path", HF_MODEL, "--out", "runs/inf"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("slot", list(SLOTS))
def test_bad_data_file(ws, no_training, slot, variant):
    write_variant(variant, ws.path(BAD))
    ws.refused(SLOTS[slot], BAD, *VARIANTS[variant])


def test_latin1_bytes_are_a_counted_warning(ws):
    """Not UTF-8 (e.g. latin-1): the bytes are replaced by U+FFFD and counted in one warning; the run goes on."""
    frame = make_arena_frame(n_prompts=3, rows_per_prompt=3, seed=2, labels=False, models=False)
    frame.loc[0, "prompt"] = '["caf\u00e9 cr\u00e8me"]'
    frame.loc[4, "response_b"] = '["na\u00efve"]'
    ws.path("latin1.csv").write_bytes(frame.to_csv(index=False).encode("latin-1"))
    outcome = ws.call(["predict", "--model", "runs/m", "--test", "latin1.csv", "--submission", "subs/latin1.csv"])
    assert outcome.rc == 0, outcome.lines
    warned = [line for line in outcome.lines if "latin1.csv" in line]
    assert len(warned) == 1 and "3 bytes" in warned[0] and "UTF-8" in warned[0], outcome.lines
    assert len(pd.read_csv(ws.path("subs/latin1.csv"))) == len(frame)


# ------------------------------------------------------------------------------- outputs aimed at inputs

OUTPUT_CASES = {
    "cv_out_is_train": (["cv", "--train", "train.csv", "--test", "test.csv", "--out", "train.csv"], "train.csv"),
    "cv_out_is_test": (["cv", "--train", "train.csv", "--test", "test.csv", "--out", "test.csv"], "test.csv"),
    "cv_out_inside_train_file": (["cv", "--train", "train.csv", "--out", "train.csv/run"], "train.csv"),
    "cv_out_holds_train": (["cv", "--train", "inputs/train.csv", "--test", "test.csv", "--out", "inputs"], "inputs"),
    "cv_out_is_cwd_holding_train": (["cv", "--train", "train.csv", "--test", "test.csv", "--out", "."], "train.csv"),
    "fit_out_is_train": (["fit", "--train", "train.csv", "--out", "train.csv"], "train.csv"),
    "predict_submission_is_test": (
        ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", "test.csv"],
        "test.csv",
    ),
    "predict_submission_in_model_folder": (
        ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", "runs/m/model/sub.csv"],
        "runs/m",
    ),
    "predict_submission_is_booster": (
        ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", "runs/m/model/booster.txt"],
        "booster.txt",
    ),
    "predict_submission_is_model_folder": (
        ["predict", "--model", "runs/m/model", "--test", "test.csv", "--submission", "runs/m/model"],
        "runs/m/model",
    ),
    "run_submission_is_train": (["run", "--train", "train.csv", "--test", "test.csv", "--submission", "train.csv"], "train.csv"),
    "run_submission_is_test": (["run", "--train", "train.csv", "--test", "test.csv", "--submission", "test.csv"], "test.csv"),
    "run_out_holds_train": (["run", "--train", "inputs/train.csv", "--test", "test.csv", "--out", "inputs"], "inputs"),
    "ablate_out_is_train": (["ablate", "--train", "train.csv", "--out", "train.csv"], "train.csv"),
    "blend_out_is_input_run": (["blend", "--runs", "runs/a", "runs/b", "--out", "runs/a"], "runs/a"),
    "blend_out_holds_input_runs": (["blend", "--runs", "runs/a", "runs/b", "--out", "runs"], "runs"),
    "blend_submission_in_input_run": (
        ["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", "runs/a/sub.csv"],
        "runs/a",
    ),
    "blend_submission_is_oof": (
        ["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", "runs/b/oof.parquet"],
        "oof.parquet",
    ),
    "train_transformer_out_is_train": (
        ["train-transformer", "--train", "train.csv", "--out", "train.csv", "--set", f"model.model_path='{HF_MODEL}'"],
        "train.csv",
    ),
    "train_transformer_out_holds_train": (
        ["train-transformer", "--train", "inputs/train.csv", "--out", "inputs", "--set", f"model.model_path='{HF_MODEL}'"],
        "inputs",
    ),
    "train_transformer_out_inside_model_folder": (
        ["train-transformer", "--train", "train.csv", "--out", f"{HF_MODEL}/run", "--set", f"model.model_path='{HF_MODEL}'"],
        HF_MODEL,
    ),
    "train_transformer_out_is_model_folder": (
        ["train-transformer", "--train", "train.csv", "--out", HF_MODEL, "--set", f"model.model_path='{HF_MODEL}'"],
        HF_MODEL,
    ),
    "infer_out_is_test": (["infer", "--test", "test.csv", "--model-path", HF_MODEL, "--out", "test.csv"], "test.csv"),
    "infer_out_holds_test": (["infer", "--test", "test.csv", "--model-path", HF_MODEL, "--out", "."], "test.csv"),
    "infer_out_is_model_folder": (["infer", "--test", "test.csv", "--model-path", HF_MODEL, "--out", HF_MODEL], HF_MODEL),
    "infer_out_inside_model_folder": (
        ["infer", "--test", "test.csv", "--model-path", HF_MODEL, "--out", f"{HF_MODEL}/run"],
        HF_MODEL,
    ),
    "cv_fold_dir_inside_train_file": (
        ["cv", "--train", "train.csv", "--test", "test.csv", "--set", "cv.fold_dir='train.csv'"],
        "train.csv",
    ),
    "cv_feature_cache_inside_test_file": (
        ["cv", "--train", "train.csv", "--test", "test.csv", "--set", "features.cache_dir='test.csv'"],
        "test.csv",
    ),
    "cv_out_replaces_fitted_model": (
        ["cv", "--train", "train.csv", "--test", "test.csv", "--out", "runs/m/model"],
        "runs/m/model",
    ),
}
OUTPUT_XFAIL: dict[str, str] = {}  # every case once marked here is fixed


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=OUTPUT_XFAIL[c])) if c in OUTPUT_XFAIL else c
        for c in OUTPUT_CASES
    ],
)
def test_output_aimed_at_an_input(ws, tripwire, no_training, case):
    argv, expected = OUTPUT_CASES[case]
    if argv[0] in ("cv", "fit", "run", "ablate"):  # the case's own --set comes after QUICK, so it wins
        argv = [argv[0], *QUICK, *argv[1:]]
    ws.refused(argv, expected)


# ------------------------------------------------------------------------------------------------ settings

SETTINGS = {
    "folds_1": (["--folds", "1"], "folds"),
    "folds_100000": (["--folds", "100000"], "folds"),
    "folds_negative": (["--folds", "-3"], "folds"),
    "folds_not_a_number": (["--folds", "three"], "folds"),
    "max_rows_0": (["--max-rows", "0"], "max_rows"),
    "max_rows_negative": (["--max-rows", "-5"], "max_rows"),
    "learning_rate_negative": (["--set", "lgbm.learning_rate=-1"], "learning_rate"),
    "learning_rate_nan": (["--set", "lgbm.learning_rate=nan"], "learning_rate"),
    "learning_rate_inf": (["--set", "lgbm.learning_rate=inf"], "learning_rate"),
    "learning_rate_text": (["--set", "lgbm.learning_rate=fast"], "learning_rate"),
    "num_leaves_0": (["--set", "lgbm.num_leaves=0"], "num_leaves"),
    "num_leaves_fraction": (["--set", "lgbm.num_leaves=2.5"], "num_leaves"),
    "bagging_fraction_2": (["--set", "lgbm.bagging_fraction=2"], "bagging_fraction"),
    "early_stopping_share_1": (["--set", "lgbm.early_stopping_share=1"], "early_stopping_share"),
    "max_rounds_0": (["--set", "lgbm.max_rounds=0"], "max_rounds"),
    "groups_empty": (["--set", "features.groups=[]"], "groups"),
    "groups_unknown": (["--set", 'features.groups=["lengths","telepathy"]'], "telepathy"),
    "groups_repeated": (["--set", 'features.groups=["lengths","lengths"]'], "groups"),
    "unknown_key": (["--set", "lgbm.bogus=1"], "bogus"),
    "unknown_section": (["--set", "bogus.key=1"], "bogus"),
    "section_set_to_scalar": (["--set", "lgbm=1"], "lgbm"),
    "set_without_equals": (["--set", "lgbm.learning_rate"], "lgbm.learning_rate"),
    "run_name_escapes": (["--set", "name='../../elsewhere'"], "elsewhere"),
    "config_missing": (["--config", "nowhere.toml"], "nowhere.toml"),
    "config_not_toml": (["--config", "CFG:not_toml.toml"], "not_toml.toml"),
    "config_utf16": (["--config", "CFG:utf16.toml"], "utf16.toml"),
    "config_binary": (["--config", "CFG:binary.toml"], "binary.toml"),
    "config_directory": (["--config", "CFG:dir.toml"], "dir.toml"),
    "config_unknown_key": (["--config", "CFG:unknown.toml"], "unknown.toml"),
    "config_out_of_range": (["--config", "CFG:range.toml"], "range.toml"),
}


def write_configs(root: Path) -> None:
    (root / "not_toml.toml").write_text("this is = = not [toml\n", encoding="utf-8")
    (root / "utf16.toml").write_bytes("[lgbm]\nnum_leaves = 7\n".encode("utf-16"))
    (root / "binary.toml").write_bytes(b"\x00\x01\x02\xff\xfe" * 50)
    (root / "dir.toml").mkdir()
    (root / "unknown.toml").write_text("[lgbm]\nnum_leavs = 7\n", encoding="utf-8")
    (root / "range.toml").write_text("[cv]\nfolds = 1\n", encoding="utf-8")


COMMAND_BASE = {
    "cv": ["cv", "--train", "train.csv", "--test", "test.csv", *QUICK],
    "fit": ["fit", "--train", "train.csv", *QUICK],
    "run": ["run", "--train", "train.csv", "--test", "test.csv", *QUICK],
    "ablate": ["ablate", "--train", "train.csv", *QUICK],
    "predict": ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", PREV_SUB],
}
FLAGLESS = {"fit": {"--folds": "cv.folds"}, "predict": {"--folds": "cv.folds", "--max-rows": "data.max_rows"}}


def command_argv(command: str, setting: list[str]) -> list[str]:
    flag, *rest = setting
    if flag in FLAGLESS.get(command, {}):  # the command has no such flag: set the same field
        setting = ["--set", f"{FLAGLESS[command][flag]}={rest[0]}"]
    setting = [s.removeprefix("CFG:") for s in setting]
    return [*COMMAND_BASE[command], *setting]


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("command", list(COMMAND_BASE))
def test_setting_out_of_range_refused_before_data(ws, tripwire, command, setting):
    write_configs(ws.root)
    argv, expected = SETTINGS[setting]
    if command == "predict" and setting == "run_name_escapes":
        pytest.skip("predict with --submission does not use the run name")
    ws.refused(command_argv(command, argv), expected)


def test_more_folds_than_prompts_refused_before_training(ws, no_training):
    ws.refused(["cv", "--train", "train.csv", "--test", "", "--folds", "20", *QUICK], "20 folds")


def test_ablate_unknown_group_refused_before_training(ws, no_training):
    ws.refused(["ablate", "--train", "train.csv", "--groups", "telepathy", *QUICK], "telepathy")


# ------------------------------------------------------------------------------------------------- flags

UNHONOURED = {
    "fit --test": ["fit", "--train", "train.csv", "--test", "x.csv"],
    "fit --folds": ["fit", "--train", "train.csv", "--folds", "3"],
    "fit --submission": ["fit", "--train", "train.csv", "--submission", "s.csv"],
    "predict --folds": ["predict", "--model", "runs/m", "--folds", "3"],
    "predict --train": ["predict", "--model", "runs/m", "--train", "train.csv"],
    "predict --out": ["predict", "--model", "runs/m", "--out", "runs/p"],
    "predict without --model": ["predict", "--test", "test.csv"],
    "blend --folds": ["blend", "--runs", "runs/a", "runs/b", "--folds", "3"],
    "blend --train": ["blend", "--runs", "runs/a", "runs/b", "--train", "train.csv"],
    "blend --test": ["blend", "--runs", "runs/a", "runs/b", "--test", "test.csv"],
    "blend --temperature=yes": ["blend", "--runs", "runs/a", "runs/b", "--temperature=yes"],
    "cv --submission": ["cv", "--train", "train.csv", "--submission", "s.csv"],
    "cv --model": ["cv", "--train", "train.csv", "--model", "runs/m"],
    "cv --groups": ["cv", "--train", "train.csv", "--groups", "lengths"],
    "cv --folds without value": ["cv", "--train", "train.csv", "--folds"],
    "run --model": ["run", "--model", "runs/m"],
    "ablate --test": ["ablate", "--train", "train.csv", "--test", "test.csv"],
    "ablate --submission": ["ablate", "--train", "train.csv", "--submission", "s.csv"],
    "train-transformer --submission": ["train-transformer", "--train", "train.csv", "--submission", "s.csv"],
    "train-transformer --model-path": ["train-transformer", "--train", "train.csv", "--model-path", HF_MODEL],
    "infer --train": ["infer", "--test", "test.csv", "--train", "train.csv"],
    "infer --folds": ["infer", "--test", "test.csv", "--folds", "3"],
    "infer --backend bogus": ["infer", "--test", "test.csv", "--backend", "bogus"],
    "infer --max-rows": ["infer", "--test", "test.csv", "--max-rows", "5"],  # test files are read whole
    "unknown command": ["cross-validate", "--train", "train.csv"],
}


@pytest.mark.parametrize("case", list(UNHONOURED))
def test_flag_the_command_does_not_honour(ws, tripwire, case):
    argv = UNHONOURED[case]
    outcome = ws.refused(argv)
    flag = case.split()[1] if case.split()[1].startswith("--") else ""
    assert flag.split("=")[0] in outcome.lines[0]


# ------------------------------------------------------------------------------------------ model folders


def _edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text(encoding="utf-8"))
    change(meta)
    path.write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


MODEL = "runs/m/model"


def damage_model(kind: str, root: Path) -> str:
    """Damages the fitted model as `kind` says; returns the --model argument."""
    model = root / MODEL
    rewrite = True
    if kind == "missing_folder":
        return "runs/nowhere"
    if kind == "empty_folder":
        (root / "runs/empty").mkdir()
        return "runs/empty"
    if kind == "a_file":
        return "train.csv"
    if kind == "cv_run_not_model":
        return "runs/a"
    if kind == "booster_truncated":
        _truncate(model / "booster.txt")
        rewrite = False
    elif kind == "estimator_edited":
        _edit_json(model / "estimator.json", lambda m: m.update(n_rounds=m["n_rounds"] + 1))
        rewrite = False
    elif kind == "manifest_deleted":
        (model / "manifest.json").unlink()
        rewrite = False
    elif kind == "manifest_garbage":
        (model / "manifest.json").write_bytes(b"\xff\x00 not json")
        rewrite = False
    elif kind == "manifest_names_missing_file":
        (model / "config.toml").unlink()
        rewrite = False
    elif kind == "manifest_kind_cv":
        write_manifest(model, "cv")
        rewrite = False
    elif kind == "booster_truncated_manifest_rewritten":
        _truncate(model / "booster.txt")
    elif kind == "booster_garbage_manifest_rewritten":
        (model / "booster.txt").write_bytes(b"\x00\x01 not a booster\n" * 10)
    elif kind == "booster_empty_manifest_rewritten":
        (model / "booster.txt").write_bytes(b"")
    elif kind == "estimator_not_json_manifest_rewritten":
        (model / "estimator.json").write_text("{family: lgbm", encoding="utf-8")
    elif kind == "foreign_family":
        _edit_json(model / "estimator.json", lambda m: m.update(family="xgboost"))
    elif kind == "transformer_family_on_lgbm_files":
        _edit_json(model / "estimator.json", lambda m: m.update(family="transformer"))
    elif kind == "foreign_version":
        _edit_json(model / "estimator.json", lambda m: m.update(version=1))
    elif kind == "estimator_config_out_of_range":
        _edit_json(model / "estimator.json", lambda m: m["config"].update(learning_rate=-1))
    elif kind == "estimator_unknown_feature_column":
        _edit_json(model / "estimator.json", lambda m: m.update(columns=[*m["columns"], "telepathy__score"]))
    elif kind == "estimator_unknown_feature_group":
        _edit_json(model / "estimator.json", lambda m: m["features"].update(groups=["telepathy"]))
    else:
        raise ValueError(kind)
    if rewrite:
        write_manifest(model, "model")
    return "runs/m"


MODEL_CASES = {
    "missing_folder": "runs/nowhere",
    "empty_folder": "runs/empty",
    "a_file": "train.csv",
    "cv_run_not_model": "runs/a",
    "booster_truncated": "booster.txt",
    "estimator_edited": "estimator.json",
    "manifest_deleted": "manifest.json",
    "manifest_garbage": "manifest.json",
    "manifest_names_missing_file": "config.toml",
    "manifest_kind_cv": MODEL,
    "booster_garbage_manifest_rewritten": MODEL,
    "booster_empty_manifest_rewritten": MODEL,
    "estimator_not_json_manifest_rewritten": MODEL,
    "foreign_family": "xgboost",
    "transformer_family_on_lgbm_files": MODEL,
    "foreign_version": MODEL,
    "estimator_config_out_of_range": MODEL,
    "estimator_unknown_feature_column": MODEL,
    "estimator_unknown_feature_group": MODEL,
}
MODEL_XFAIL: dict[str, str] = {}  # every case once marked here is fixed


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=MODEL_XFAIL[c])) if c in MODEL_XFAIL else c
        for c in MODEL_CASES
    ],
)
def test_predict_with_a_damaged_model(ws, case):
    model = damage_model(case, ws.root)
    ws.refused(["predict", "--model", model, "--test", "test.csv", "--submission", PREV_SUB], MODEL_CASES[case])


def test_predict_with_a_truncated_booster_in_a_real_process(ws):
    """A truncated booster.txt with a matching manifest (a torn copy): LightGBM must not take the process down."""
    damage_model("booster_truncated_manifest_rewritten", ws.root)
    files, dirs = snapshot(ws.root)
    result = subprocess.run(
        [sys.executable, "-m", "competition", "predict", "--model", "runs/m", "--test", "test.csv", "--submission", PREV_SUB],
        cwd=ws.root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and MODEL in lines[0], (result.returncode, result.stderr)
    assert snapshot(ws.root) == (files, dirs)


# ------------------------------------------------------------------------------------------- blend inputs


def _tamper(run: Path, change, file: str = "oof.parquet") -> None:
    frame = pd.read_parquet(run / file)
    frame = change(frame)
    frame.to_parquet(run / file, index=False)
    write_manifest(run, "cv")  # the value checks are under test, not the hash


def _set(row: int, **values):
    def change(frame):
        for column, value in values.items():
            frame.loc[row, column] = value
        return frame

    return change


def _rename_one_id(frame):
    frame.loc[len(frame) - 1, "id"] = "999999"
    return frame


def _swap_folds(frame):
    first = frame.index[frame["fold"] == 0][0]
    other = frame.index[frame["fold"] == 1][0]
    frame.loc[[first, other], "fold"] = frame.loc[[other, first], "fold"].to_numpy()
    return frame


def damage_blend(kind: str, root: Path) -> list[str]:
    """Damages runs/b as `kind` says; returns the --runs arguments."""
    b = root / "runs/b"
    runs = ["runs/a", "runs/b"]
    if kind == "no_manifest":
        (b / "manifest.json").unlink()
    elif kind == "run_missing":
        return ["runs/a", "runs/nowhere"]
    elif kind == "run_is_a_file":
        return ["runs/a", "train.csv"]
    elif kind == "same_run_twice":
        return ["runs/a", "runs/a"]
    elif kind == "model_folder_as_run":
        return ["runs/a", MODEL]
    elif kind == "oof_hand_edited":
        frame = pd.read_parquet(b / "oof.parquet")
        frame.iloc[:-1].to_parquet(b / "oof.parquet", index=False)
    elif kind == "oof_nan":
        _tamper(b, _set(3, winner_model_a=np.nan))
    elif kind == "oof_negative":
        _tamper(b, _set(2, winner_model_a=-0.1, winner_model_b=0.6, winner_tie=0.5))
    elif kind == "oof_above_one":
        _tamper(b, _set(2, winner_model_a=1.5, winner_model_b=-0.25, winner_tie=-0.25))
    elif kind == "oof_not_summing_to_one":
        _tamper(b, _set(6, winner_model_a=0.5, winner_model_b=0.5, winner_tie=0.5))
    elif kind == "oof_duplicate_id":
        _tamper(b, lambda f: pd.concat([f, f.iloc[[4]]], ignore_index=True))
    elif kind == "oof_label_out_of_range":  # both runs agree on the bad label
        _tamper(root / "runs/a", _set(5, label=7))
        _tamper(b, _set(5, label=7))
    elif kind == "oof_fold_negative":
        _tamper(root / "runs/a", _set(5, fold=-1))
        _tamper(b, _set(5, fold=-1))
    elif kind == "oof_missing_fold_column":
        _tamper(b, lambda f: f.drop(columns=["fold"]))
    elif kind == "oof_not_parquet":
        (b / "oof.parquet").write_bytes(b"PAR1 but not really")
        write_manifest(b, "cv")
    elif kind == "oof_deleted":
        (b / "oof.parquet").unlink()
        write_manifest(b, "cv")
    elif kind == "folds_disagree":
        _tamper(b, _swap_folds)
    elif kind == "labels_disagree":
        _tamper(b, lambda f: _set(1, label=(int(f.loc[1, "label"]) + 1) % 3)(f))
    elif kind == "no_shared_ids":
        _tamper(b, lambda f: f.assign(id="x" + f["id"]))
    elif kind == "test_row_dropped":
        _tamper(b, lambda f: f.iloc[:-1], "test.parquet")
    elif kind == "test_id_replaced":
        _tamper(b, _rename_one_id, "test.parquet")
    elif kind == "test_nan":
        _tamper(b, _set(0, winner_tie=np.nan), "test.parquet")
    elif kind == "test_in_one_run_only":
        (b / "test.parquet").unlink()
        write_manifest(b, "cv")
    else:
        raise ValueError(kind)
    return runs


BLEND_CASES = {
    "no_manifest": ("runs/b", "manifest.json"),
    "run_missing": ("runs/nowhere",),
    "run_is_a_file": ("train.csv",),
    "same_run_twice": ("twice",),
    "model_folder_as_run": (MODEL,),
    "oof_hand_edited": ("runs/b", "oof.parquet"),
    "oof_nan": ("oof.parquet", "row 4", "column 'winner_model_a'"),
    "oof_negative": ("oof.parquet", "row 3", "column 'winner_model_a'"),
    "oof_above_one": ("oof.parquet", "row 3"),
    "oof_not_summing_to_one": ("oof.parquet", "row 7"),
    "oof_duplicate_id": ("oof.parquet", "duplicate id", "column 'id'"),
    "oof_label_out_of_range": ("oof.parquet", "row 6", "column 'label'"),
    "oof_fold_negative": ("oof.parquet", "row 6", "column 'fold'"),
    "oof_missing_fold_column": ("oof.parquet", "column 'fold'"),
    "oof_not_parquet": ("oof.parquet",),
    "oof_deleted": ("oof.parquet",),
    "folds_disagree": ("runs/b", "column 'fold'"),
    "labels_disagree": ("runs/b", "column 'label'"),
    "no_shared_ids": ("share no",),
    "test_row_dropped": ("runs/b", "test.parquet"),
    "test_id_replaced": ("runs/b", "test.parquet"),
    "test_nan": ("test.parquet", "row 1", "column 'winner_tie'"),
    "test_in_one_run_only": ("runs/b", "test.parquet"),
}
BLEND_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=BLEND_XFAIL[c])) if c in BLEND_XFAIL else c
        for c in BLEND_CASES
    ],
)
def test_blend_with_bad_runs(ws, case):
    runs = damage_blend(case, ws.root)
    ws.refused(["blend", "--runs", *runs, "--out", "runs/c", "--submission", PREV_SUB], *BLEND_CASES[case])


def test_blend_over_an_existing_blend_with_bad_input_keeps_it(ws):
    """A refused blend leaves an earlier blend run (and its submission) exactly as it was."""
    outcome = ws.call(["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", "submissions/c.csv"])
    assert outcome.rc == 0, outcome.lines
    damage_blend("oof_nan", ws.root)
    ws.refused(["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", "submissions/c.csv"], "oof.parquet")


# -------------------------------------------------------------------------------- train-transformer, infer

TT = ["train-transformer", "--train", "train.csv", "--test", "test.csv", "--out", "runs/tt"]
TRANSFORMER_CASES = {
    "model_path_missing": (["--set", "model.model_path='nowhere'"], "nowhere"),
    "no_model_path": ([], "model_path"),
    "model_package_missing": (["--set", "model.model_package='no_such_model_pkg'"], "no_such_model_pkg"),
    "only_folds_out_of_range": (["--set", f"model.model_path='{HF_MODEL}'", "--set", "train.only_folds=[5]"], "only_folds"),
    "only_folds_negative": (["--set", f"model.model_path='{HF_MODEL}'", "--set", "train.only_folds=[-1]"], "only_folds"),
    "learning_rate_0": (["--set", f"model.model_path='{HF_MODEL}'", "--set", "train.learning_rate=0"], "learning_rate"),
    "folds_1": (["--set", f"model.model_path='{HF_MODEL}'", "--folds", "1"], "folds"),
    "max_rows_0": (["--set", f"model.model_path='{HF_MODEL}'", "--max-rows", "0"], "max_rows"),
    "max_length_4": (["--set", f"model.model_path='{HF_MODEL}'", "--set", "model.max_length=4"], "max_length"),
    "dtype_bogus": (["--set", f"model.model_path='{HF_MODEL}'", "--set", "model.dtype='int3'"], "dtype"),
    "batch_size_0": (["--set", f"model.model_path='{HF_MODEL}'", "--set", "train.batch_size=0"], "batch_size"),
    "config_utf16": (["--config", "utf16.toml"], "utf16.toml"),
    "config_directory": (["--config", "dir.toml"], "dir.toml"),
    "unknown_key": (["--set", "train.bogus=1"], "bogus"),
}
TRANSFORMER_XFAIL: dict[str, str] = {}  # every case once marked here is fixed


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=TRANSFORMER_XFAIL[c])) if c in TRANSFORMER_XFAIL else c
        for c in TRANSFORMER_CASES
    ],
)
def test_train_transformer_refused_before_data(ws, tripwire, case):
    write_configs(ws.root)
    extra, expected = TRANSFORMER_CASES[case]
    ws.refused([*TT, *extra], expected)


INFER = ["infer", "--test", "test.csv", "--out", "runs/inf"]
INFER_CASES = {
    "no_model_path": ([], "model"),
    "model_path_missing": (["--model-path", "nowhere"], "nowhere"),
    "model_path_is_a_file": (["--model-path", "train.csv"], "train.csv"),
    "max_length_4": (["--model-path", HF_MODEL, "--max-length", "4"], "max_length"),
    "token_budget_0": (["--model-path", HF_MODEL, "--token-budget", "0"], "token_budget"),
    "shard_rows_0": (["--model-path", HF_MODEL, "--set", "batching.shard_rows=0"], "shard_rows"),
    "threads_0": (["--model-path", HF_MODEL, "--set", "workers.threads=0"], "threads"),
    "placement_bogus": (["--model-path", HF_MODEL, "--set", "swap.placement='diagonal'"], "placement"),
    "config_not_toml": (["--model-path", HF_MODEL, "--config", "not_toml.toml"], "not_toml.toml"),
    "unknown_key": (["--model-path", HF_MODEL, "--set", "model.bogus=1"], "bogus"),
}
INFER_XFAIL: dict[str, str] = {}  # every case once marked here is fixed


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=INFER_XFAIL[c])) if c in INFER_XFAIL else c
        for c in INFER_CASES
    ],
)
def test_infer_refused_before_data(ws, tripwire, case):
    write_configs(ws.root)
    extra, expected = INFER_CASES[case]
    ws.refused([*INFER, *extra], expected)


@pytest.mark.parametrize("case", ["no_model_path", "model_path_missing", "model_path_is_a_file"])
def test_infer_bad_model_path_with_real_data(ws, case):
    """Even when the test file is read first, a bad model path is one line and writes nothing."""
    extra, expected = INFER_CASES[case]
    ws.refused([*INFER, *extra], expected)


# ------------------------------------------------------------------------------ real process, real stderr


def test_real_subprocess_stderr_is_one_line(ws):
    write_variant("not_one_hot", ws.path(BAD))
    damage_blend("oof_nan", ws.root)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cases = [
        (["cv", "--train", BAD, "--test", "test.csv", "--out", "runs/a", *QUICK], ("bad.csv", "row 2")),
        (["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", PREV_SUB], ("oof.parquet", "row 4")),
    ]
    files, dirs = snapshot(ws.root)
    for argv, expected in cases:
        result = subprocess.run(
            [sys.executable, "-m", "competition", *argv], cwd=ws.root, capture_output=True, text=True, env=env, timeout=120
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert all(text in lines[0] for text in expected), lines
    assert snapshot(ws.root) == (files, dirs)


# ------------------------------------------------------------------------ outputs that cannot be written at all
# Checked before any data is read or model trained (the tripwires): a folder that takes no file (/proc, /sys take
# none even for root, whatever their permission bits say), a parent that is a file, a file output that is a folder.

NOTES = "notes.txt"  # a file of the user's that is no input
CANNOT_WRITE = {
    "cv_out_in_proc": (["cv", "--train", "train.csv", "--test", "test.csv", "--out", "/proc/arena-run1"], "/proc"),
    "fit_out_in_sys": (["fit", "--train", "train.csv", "--out", "/sys/arena-run1"], "/sys"),
    "run_out_in_proc": (["run", "--train", "train.csv", "--test", "test.csv", "--out", "/proc/arena-run1"], "/proc"),
    "ablate_out_in_proc": (["ablate", "--train", "train.csv", "--out", "/proc/arena-run1"], "/proc"),
    "cv_out_under_a_file": (["cv", "--train", "train.csv", "--test", "test.csv", "--out", f"{NOTES}/run1"], NOTES),
    "fit_out_under_a_file": (["fit", "--train", "train.csv", "--out", f"{NOTES}/deeper/run1"], NOTES),
    "cv_fold_dir_in_proc": (["cv", "--train", "train.csv", "--test", "test.csv", "--set", "cv.fold_dir='/proc/folds'"], "/proc"),
    "cv_fold_dir_under_a_file": (["cv", "--train", "train.csv", "--set", f"cv.fold_dir='{NOTES}/folds'"], NOTES),
    "cv_feature_cache_in_proc": (["cv", "--train", "train.csv", "--set", "features.cache_dir='/proc/cache'"], "/proc"),
    "fit_feature_cache_under_a_file": (["fit", "--train", "train.csv", "--set", f"features.cache_dir='{NOTES}/c'"], NOTES),
    "predict_submission_is_a_folder": (
        ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", "submissions"],
        "submissions",
    ),
    "predict_submission_under_a_file": (
        ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", f"{NOTES}/sub.csv"],
        NOTES,
    ),
    "predict_submission_in_proc": (
        ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", "/proc/s.csv"],
        "/proc",
    ),
    "run_submission_is_a_folder": (
        ["run", "--train", "train.csv", "--test", "test.csv", "--submission", "submissions"],
        "submissions",
    ),
    "blend_submission_is_a_folder": (["blend", "--runs", "runs/a", "runs/b", "--submission", "submissions"], "submissions"),
    "blend_out_in_proc": (["blend", "--runs", "runs/a", "runs/b", "--out", "/proc/blend1"], "/proc"),
    "infer_out_in_proc": (["infer", "--test", "test.csv", "--model-path", HF_MODEL, "--out", "/proc/inf1"], "/proc"),
    "infer_out_under_a_file": (["infer", "--test", "test.csv", "--model-path", HF_MODEL, "--out", f"{NOTES}/inf"], NOTES),
    "features_out_in_proc": (["features", "--train", "train.csv", "--out", "/proc/feat1"], "/proc"),
    "train_transformer_out_in_proc": (
        ["train-transformer", "--train", "train.csv", "--out", "/proc/tt1", "--set", f"model.model_path='{HF_MODEL}'"],
        "/proc",
    ),
}


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc and /sys")
@pytest.mark.parametrize("case", list(CANNOT_WRITE))
def test_an_output_that_cannot_be_written_is_refused_before_any_work(ws, tripwire, no_training, case):
    ws.path(NOTES).write_text("the user's notes\n", encoding="utf-8")
    argv, expected = CANNOT_WRITE[case]
    if argv[0] in ("cv", "fit", "run", "ablate"):  # the case's own --set comes after QUICK, so it wins
        argv = [argv[0], *QUICK, *argv[1:]]
    ws.refused(argv, expected)


def test_an_output_on_a_full_disk_is_refused_before_any_work(ws, tripwire, no_training, monkeypatch):
    import competition.rundir

    full = shutil.disk_usage(ws.root)._replace(free=1 << 20)
    monkeypatch.setattr(competition.rundir.shutil, "disk_usage", lambda path: full)
    ws.refused(["cv", *QUICK, "--train", "train.csv", "--test", "test.csv", "--out", "runs/new"], "1 MiB free")


# ------------------------------------------------------------- settings a library would take badly, configs coerced

CONFIG_FILES = {
    "groups_string.toml": '[features]\ngroups = "lengths"\n',  # a string where a list goes: never a one-item list
    "section_scalar.toml": "lgbm = 5\n",  # a value where a table goes: never replaced by --set lgbm.x=...
}
LIBRARY_SETTINGS = {
    "seed_negative": (["cv", "--seed", "-1"], "cv.seed"),
    "seed_too_large": (["cv", "--seed", str(2**32)], "cv.seed"),
    "fit_seed_negative": (["fit", "--seed", "-1"], "cv.seed"),
    "ablate_seed_negative": (["ablate", "--seed", "-1"], "cv.seed"),
    "lgbm_seed_field_negative": (["cv", "--set", "lgbm.seed=-5"], "seed"),
    "groups_as_a_string": (["cv", "--config", "groups_string.toml"], "groups"),
    "groups_as_a_string_by_set": (["cv", "--set", "features.groups=lengths"], "groups"),
    "section_scalar_then_set": (["cv", "--config", "section_scalar.toml", "--set", "lgbm.max_rounds=3"], "lgbm"),
    "fit_section_scalar_then_set": (["fit", "--config", "section_scalar.toml", "--set", "lgbm.num_leaves=3"], "lgbm"),
    "infer_ray_address_unparsable": (["infer", "--engine", "ray", "--ray-address", "not an address"], "ray_address"),
    "infer_ray_address_port_out_of_range": (["infer", "--engine", "ray", "--ray-address", "localhost:70000"], "ray_address"),
    "infer_ray_address_without_ray": (["infer", "--ray-address", "127.0.0.1:6379"], "ray_address"),
    "features_ray_address_unparsable": (["features", "--engine", "ray", "--ray-address", "http://x y"], "ray_address"),
    "features_ray_address_without_ray": (["features", "--ray-address", "auto"], "ray_address"),
}
# No QUICK settings: every case is refused before data (the tripwire), and QUICK's `--set features.groups=[...]`
# would override (and so hide) a bad value in a config file.
LIBRARY_BASE = {
    "cv": ["--train", "train.csv", "--test", "test.csv"],
    "fit": ["--train", "train.csv"],
    "ablate": ["--train", "train.csv"],
    "infer": ["--test", "test.csv", "--model-path", HF_MODEL, "--out", "runs/inf"],
    "features": ["--train", "train.csv", "--out", "runs/feat"],
}


@pytest.mark.parametrize("case", list(LIBRARY_SETTINGS))
def test_a_setting_a_library_would_take_badly_is_refused_before_data(ws, tripwire, case):
    for name, text in CONFIG_FILES.items():
        ws.path(name).write_text(text, encoding="utf-8")
    (command, *setting), expected = LIBRARY_SETTINGS[case]
    ws.refused([command, *LIBRARY_BASE[command], *setting], expected)


@pytest.mark.parametrize("engine_flags", [["infer", "--model-path", HF_MODEL], ["features", "--train", "train.csv"]])
def test_an_unreachable_ray_cluster_is_one_line_within_its_timeout(ws, tripwire, engine_flags):
    """Nothing listens on port 1: refused at once, before any file is written (a hang was stopped by a timeout)."""
    pytest.importorskip("ray")
    start = time.monotonic()
    argv = [*engine_flags, "--out", "runs/remote", "--engine", "ray", "--ray-address", "127.0.0.1:1"]
    ws.refused(argv + (["--test", "test.csv"] if argv[0] == "infer" else []), "127.0.0.1:1")
    assert time.monotonic() - start < 60


# -------------------------------------------------------------------------------------------------- tiny files

TINY = {
    "three_rows_three_prompts": dict(n_prompts=3, rows_per_prompt=1),
    "one_row": dict(n_prompts=1, rows_per_prompt=1),
    "one_prompt_four_rows": dict(n_prompts=1, rows_per_prompt=4),
}
TINY_COMMANDS = {
    "cv": ["cv", "--train", "tiny.csv", "--test", "test.csv", "--folds", "2", "--out", "runs/tiny", *QUICK],
    "fit": ["fit", "--train", "tiny.csv", "--out", "runs/tiny", *QUICK],
    "run": ["run", "--train", "tiny.csv", "--test", "test.csv", "--folds", "2", "--out", "runs/tiny", *QUICK],
    "ablate": ["ablate", "--train", "tiny.csv", "--folds", "2", "--out", "runs/tiny", *QUICK],
}


@pytest.mark.parametrize("command", list(TINY_COMMANDS))
@pytest.mark.parametrize("size", list(TINY))
def test_a_training_file_too_small_to_train_on_is_one_line(ws, command, size):
    """Refused in one line before anything is written (scikit-learn's splitters and LightGBM's early-stopping split
    raised their own errors); three prompts of one row each are enough for `fit` (two to train, one to stop on)."""
    if (command, size) == ("fit", "three_rows_three_prompts"):
        pytest.skip("trainable")
    make_arena_frame(seed=5, **TINY[size]).to_csv(ws.path("tiny.csv"), index=False)
    ws.refused(TINY_COMMANDS[command], "")


def test_a_model_naming_a_feature_the_registry_does_not_compute_is_one_line(ws):
    """The group is known, the column is not (a model saved by another version): not a KeyError."""
    model = ws.root / MODEL
    _edit_json(model / "estimator.json", lambda m: m.update(columns=[*m["columns"], "lengths__a_telepathy"]))
    write_manifest(model, "model")
    ws.refused(["predict", "--model", "runs/m", "--test", "test.csv", "--submission", PREV_SUB], "lengths__a_telepathy")


# ------------------------------------------------------------------------------ what a command reads back, tampered


def _rewrite_parquet(path: Path, change) -> None:
    frame = change(pd.read_parquet(path))
    frame.to_parquet(path, index=False)


def damage_readback(kind: str, root: Path) -> list[str]:
    """Damages what the command reads back from an earlier run; returns its command line."""
    from competition.rundir import seal

    feat, part = root / "runs/feat", root / "runs/feat/parts/part-00000.parquet"
    cv_from_table = ["cv", *QUICK, "--train", "train.csv", "--test", "", "--folds", "3", "--features-table", "runs/feat"]
    if kind.startswith("part") or kind.startswith("parts_index"):
        assert main(["features", "--train", "train.csv", "--out", "runs/feat", "--rows-per-block", "8"]) == 0
    if kind == "part_columns_rewritten":
        _rewrite_parquet(part, lambda f: f.assign(**{c: 0.0 for c in f.columns if c.startswith("lengths__")}))
    elif kind == "part_rewritten_manifest_rewritten":  # the manifest made to agree: the part's seal still tells
        _rewrite_parquet(part, lambda f: f.assign(**{c: 1.0 for c in f.columns if c != "id"}))
        write_manifest(feat, "features")
    elif kind == "part_truncated":
        part.write_bytes(part.read_bytes()[:100])
    elif kind == "part_repeated_ids_resealed":
        _rewrite_parquet(part, lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True))
        seal(part, json.loads((feat / "parts/parts.json").read_text())["fingerprint"])
        write_manifest(feat, "features")
    elif kind == "parts_index_corrupt":
        (feat / "parts/parts.json").write_text("{not json", encoding="utf-8")
        write_manifest(feat, "features")
    elif kind == "parts_index_no_parts_resealed":
        index = feat / "parts/parts.json"
        meta = json.loads(index.read_text())
        index.write_text(json.dumps(meta | {"parts": 0}), encoding="utf-8")
        seal(index, meta["fingerprint"])
        write_manifest(feat, "features")
    elif kind == "manifest_facts_edited":
        _edit_json(root / "runs/b/manifest.json", lambda m: m["facts"].update(rows=m["facts"]["rows"] + 1))
        return ["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", PREV_SUB]
    elif kind == "manifest_kind_edited":
        _edit_json(root / MODEL / "manifest.json", lambda m: m.update(kind="cv"))
        return ["predict", "--model", "runs/m", "--test", "test.csv", "--submission", PREV_SUB]
    elif kind == "manifest_of_an_older_format":
        _edit_json(root / "runs/b/manifest.json", lambda m: m.update(format="arena-preference-run/1"))
        return ["blend", "--runs", "runs/a", "runs/b", "--out", "runs/c", "--submission", PREV_SUB]
    elif kind == "fold_table_changed":
        table = next((root / "runs/folds").glob("folds-*-k3-s42.parquet"))
        _rewrite_parquet(table, lambda f: f.assign(fold=(f["fold"] + 1) % 3))  # still a grouped split: the seal tells
        return ["cv", *QUICK, "--train", "train.csv", "--test", "test.csv", "--folds", "3", "--out", "runs/new"]
    elif kind == "fold_table_torn":
        table = next((root / "runs/folds").glob("folds-*-k3-s42.parquet"))
        table.write_bytes(table.read_bytes()[:50])
        return ["cv", *QUICK, "--train", "train.csv", "--test", "test.csv", "--folds", "3", "--out", "runs/new"]
    else:
        raise ValueError(kind)
    return cv_from_table


READBACK_CASES = {
    "part_columns_rewritten": ("runs/feat", "part-00000.parquet", "does not match the manifest"),
    "part_rewritten_manifest_rewritten": ("part-00000.parquet", "does not match its seal"),
    "part_truncated": ("part-00000.parquet",),
    "part_repeated_ids_resealed": ("twice", "column 'id'"),
    "parts_index_corrupt": ("parts.json", "seal"),
    "parts_index_no_parts_resealed": ("parts.json", "no parts"),
    "manifest_facts_edited": ("runs/b", "manifest.json", "own digest"),
    "manifest_kind_edited": ("manifest.json", "own digest"),
    "manifest_of_an_older_format": ("manifest.json", "arena-preference-run/1"),
    "fold_table_changed": ("runs/folds/folds-", "does not match its seal"),
    "fold_table_torn": ("runs/folds/folds-", "does not match its seal"),
}


@pytest.mark.parametrize("case", list(READBACK_CASES))
def test_a_tampered_file_read_back_from_a_run_is_one_line(ws, no_training, case):
    ws.refused(damage_readback(case, ws.root), *READBACK_CASES[case])
