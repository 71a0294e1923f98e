"""Hostile inputs to `leaderboard`, `prompt-leaderboard` and `route`, through `cli.main`.

The promise for every refused case: exit code 2, exactly one line on stderr (naming the file, and the row
and column when the problem is inside a data file), no traceback, no fitting started, nothing written (no
new run directory, no *.tmp / *.staging left), and every file that existed before byte-identical afterwards
(a finished run of each command included). A prompt id taken from the data never becomes a path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cli import main
from tests.test_leaderboard_prompt import pairs_csv
from tests.test_leaderboard_run import battles_csv
from tests.test_routing_router import write_graded

BAD, BAD_TOML = "bad.csv", "bad.toml"
PLB = [
    "--set",
    'features.groups=["lengths"]',
    "--set",
    "lgbm.max_rounds=20",
    "--set",
    "lgbm.min_data_in_leaf=3",
    "--set",
    "lgbm.early_stopping_share=0",
    "--set",
    "lgbm.num_threads=1",
    "--set",
    "cv.folds=3",
]
ROUTE = ["--costs", "route/costs.toml", "--folds", "4"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Input files of the three commands and one finished run of each, made once per module."""
    root = tmp_path_factory.mktemp("leaderboard_hostile")
    for folder in ("plb", "route"):
        (root / folder).mkdir()
    battles_csv(root / "battles.csv", n=300)
    pairs_csv(root / "plb", n_prompts=9)
    write_graded(root / "route", n_prompts=16)
    pd.DataFrame({"id": ["n1", "n2"], "prompt": [json.dumps(["write python code"]), json.dumps(["say hi"])]}).to_csv(
        root / "route" / "new.csv", index=False
    )
    (root / "route" / "costs_plb.toml").write_text('"verbose-pro" = 10.0\n"mid-size" = 3.0\ntiny = 1.0\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["leaderboard", "--train", "battles.csv", "--bootstrap", "0", "--out", "runs/lb"]) == 0
        assert main(["prompt-leaderboard", "--train", "plb/pairs.csv", "--prompt-id", "q1", "--out", "runs/plb", *PLB]) == 0
        assert main(["route", "--train", "route/pairs.csv", "--grades", "route/grades.csv", *ROUTE, "--out", "runs/route"]) == 0
    return root


def snapshot(root: Path) -> tuple[dict[str, str], set[str]]:
    files, dirs = {}, set()
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            dirs.add(rel)
        else:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, dirs


@pytest.fixture
def no_fitting(monkeypatch):
    import analysis.routing.quality
    import models.bradley_terry
    import models.lgbm

    def boom(*args, **kwargs):
        raise AssertionError("tripwire: fitting started although the input is bad")

    monkeypatch.setattr(models.lgbm.LGBMPreference, "fit", boom)
    monkeypatch.setattr(models.bradley_terry.BradleyTerry, "fit", boom)
    monkeypatch.setattr(analysis.routing.quality.PromptQuality, "fit", boom)


@pytest.fixture
def refused(base, tmp_path, monkeypatch, capsys, caplog, no_fitting):
    """Runs argv in a fresh copy of the workspace and asserts the whole promise."""
    root = tmp_path / "ws"
    shutil.copytree(base, root)
    monkeypatch.chdir(root)

    def check(argv: list[str], *expected: str, prepare=None) -> str:
        if prepare is not None:
            prepare(root)
        files, dirs = snapshot(root)
        capsys.readouterr()
        caplog.clear()
        caplog.set_level(logging.INFO)
        rc = main(list(argv))
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        lines += [f"{r.levelname}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]
        assert "Traceback" not in err, err
        assert rc == 2, f"exit {rc}: {lines}"
        assert len(lines) == 1 and lines[0].startswith("error:"), lines
        for text in expected:
            assert text in lines[0], f"{text!r} not in {lines[0]!r}"
        after_files, after_dirs = snapshot(root)
        assert {k: v for k, v in after_files.items() if k in files} == files, "pre-existing files changed"
        assert set(after_files) == set(files) and after_dirs == dirs, "written although refused"
        return lines[0]

    return check


# ------------------------------------------------------------------------------------------- bad data files


def write_variant(kind: str, good: Path, bad: Path, drop: str, model: str | None, ident: str | None) -> None:
    frame = pd.read_csv(good, dtype=str, keep_default_na=False)
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "binary":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    elif kind == "utf16":
        frame.to_csv(bad, index=False, encoding="utf-16")
    elif kind == "header_only":
        frame.head(0).to_csv(bad, index=False)
    elif kind == "missing_column":
        frame.drop(columns=[drop]).to_csv(bad, index=False)
    elif kind == "empty_model":
        frame.loc[1, model] = ""
        frame.to_csv(bad, index=False)
    elif kind == "duplicate_id":
        frame.loc[2, ident] = frame.loc[1, ident]
        frame.to_csv(bad, index=False)
    elif kind == "bad_grade":
        frame.loc[3, "grade"] = "ten"
        frame.to_csv(bad, index=False)
    elif kind == "second_grade":
        frame.iloc[2] = frame.iloc[1]
        frame.to_csv(bad, index=False)
    else:
        raise ValueError(kind)


# slot: (argv with BAD, the good file the variants start from, column to drop, model column, id column)
SLOTS = {
    "leaderboard:battles": (
        ["leaderboard", "--train", BAD, "--bootstrap", "0", "--out", "runs/lb"],
        "battles.csv",
        "model_b",
        "model_a",
        "id",
    ),
    "prompt:train": (
        ["prompt-leaderboard", "--train", BAD, "--prompt-id", "q1", "--out", "runs/plb", *PLB],
        "plb/pairs.csv",
        "response_a",
        "model_b",
        "id",
    ),
    "prompt:grades": (
        ["prompt-leaderboard", "--train", "plb/pairs.csv", "--grades", BAD, "--prompt-id", "q1", "--out", "runs/plb", *PLB],
        "plb/grades.csv",
        "grade",
        "model",
        None,
    ),
    "prompt:test_row": (
        ["prompt-leaderboard", "--train", "plb/pairs.csv", "--test", BAD, "--row", "1", "--out", "runs/plb", *PLB],
        "plb/pairs.csv",
        "prompt",
        None,
        "id",
    ),
    "route:prompts": (
        ["route", "--train", BAD, "--grades", "route/grades.csv", *ROUTE, "--out", "runs/route"],
        "route/pairs.csv",
        "prompt",
        None,
        None,
    ),
    "route:grades": (
        ["route", "--train", "route/pairs.csv", "--grades", BAD, *ROUTE, "--out", "runs/route"],
        "route/grades.csv",
        "grade",
        "model",
        None,
    ),
    "route:test": (
        ["route", "--train", "route/pairs.csv", "--grades", "route/grades.csv", "--test", BAD, *ROUTE, "--out", "runs/route"],
        "route/new.csv",
        "prompt",
        None,
        None,
    ),
    "route:pairs_without_grades": (
        ["route", "--train", BAD, "--costs", "route/costs_plb.toml", "--folds", "3", "--out", "runs/route"],
        "plb/pairs.csv",
        "model_b",
        "model_a",
        "id",
    ),
}
VARIANTS = {
    "empty": ("empty",),
    "binary": ("binary",),
    "utf16": ("UTF-16",),
    "header_only": ("no rows",),
    "missing_column": (),  # the slot's column, below
    "empty_model": ("row 2", "empty model name"),
    "duplicate_id": ("row 3", "duplicate id", "column 'id'"),
    "bad_grade": ("row 4", "column 'grade'"),
    "second_grade": ("row 3", "second grade"),
}
CASES = [
    (slot, kind)
    for slot, (_, _, _, model, ident) in SLOTS.items()
    for kind in VARIANTS
    if (kind != "empty_model" or model)
    and (kind != "duplicate_id" or ident)
    and (kind not in ("bad_grade", "second_grade") or slot.endswith(":grades"))
]


@pytest.mark.parametrize(("slot", "kind"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_bad_data_file(refused, slot, kind):
    argv, good, drop, model, ident = SLOTS[slot]
    expected = [BAD, *VARIANTS[kind]]
    if kind == "missing_column":
        expected.append(f"column '{drop}'")
    elif kind == "empty_model":
        expected.append(f"column '{model}'")
    refused(argv, *expected, prepare=lambda root: write_variant(kind, root / good, root / BAD, drop, model, ident))


@pytest.mark.parametrize("kind", ["empty", "binary", "utf16", "not_numbers", "directory"])
def test_bad_cost_table(refused, kind):
    def prepare(root):
        path = root / BAD_TOML
        if kind == "directory":
            path.mkdir()
        else:
            content = {"empty": b"", "binary": bytes(range(256)), "not_numbers": b'cheap = "free"\n'}
            path.write_bytes(content[kind] if kind in content else "cheap = 1.0\n".encode("utf-16"))

    argv = ["route", "--train", "route/pairs.csv", "--grades", "route/grades.csv", "--costs", BAD_TOML, "--folds", "4"]
    refused([*argv, "--out", "runs/route"], BAD_TOML, prepare=prepare)


# ------------------------------------------------------------------------------- flags, settings, outputs

PROMPT_ARGS = ["--train", "plb/pairs.csv", "--prompt-id", "q1", *PLB]
ROUTE_ARGS = ["--train", "route/pairs.csv", "--grades", "route/grades.csv", *ROUTE]
REFUSED = {
    # flags a command does not honour
    "leaderboard_folds": (["leaderboard", "--folds", "3"], "unrecognized arguments"),
    "leaderboard_test": (["leaderboard", "--test", "x.csv"], "unrecognized arguments"),
    "prompt_tie_model": (["prompt-leaderboard", *PROMPT_ARGS, "--tie-model", "half"], "unrecognized arguments"),
    "route_max_rows": (["route", *ROUTE_ARGS, "--max-rows", "5"], "unrecognized arguments"),
    "route_bootstrap": (["route", *ROUTE_ARGS, "--bootstrap", "5"], "unrecognized arguments"),
    # settings out of range
    "tie_model_unknown": (["leaderboard", "--tie-model", "glicko"], "glicko"),
    "bootstrap_negative": (["leaderboard", "--bootstrap", "-1"], "bootstrap_rounds"),
    "bootstrap_one": (["leaderboard", "--bootstrap", "1"], "bootstrap_rounds"),
    "level_1.5": (["leaderboard", "--set", "intervals.level=1.5"], "intervals.level"),
    "level_nan": (["leaderboard", "--set", "intervals.level=nan"], "intervals.level"),
    "share_1": (["leaderboard", "--set", "holdout.share=1"], "holdout.share"),
    "split_unknown": (["leaderboard", "--set", "holdout.split='time'"], "holdout.split"),
    "methods_unknown": (["leaderboard", "--set", "intervals.methods=['jackknife']"], "intervals.methods"),
    "min_battles_negative": (["leaderboard", "--set", "intervals.min_battles=-1"], "min_battles"),
    "l2_inf": (["leaderboard", "--set", "fit.l2=inf"], "fit.l2"),
    "both_bad_unknown": (["leaderboard", "--set", "data.both_bad='maybe'"], "both_bad"),
    "anchor_model_empty": (["leaderboard", "--set", "fit.anchor_model=' '"], "anchor_model"),
    "max_rows_0": (["leaderboard", "--max-rows", "0"], "max_rows"),
    "style_feature_unknown": (["leaderboard", "--set", "fit.style_features=['telepathy__x']"], "telepathy__x"),
    "prompt_folds_1": (["prompt-leaderboard", *PROMPT_ARGS, "--set", "cv.folds=1"], "folds"),
    "prompt_folds_101": (["prompt-leaderboard", *PROMPT_ARGS, "--set", "cv.folds=101"], "folds"),
    "prompt_row_0": (["prompt-leaderboard", "--train", "plb/pairs.csv", "--test", "plb/pairs.csv", "--row", "0"], "row"),
    "prompt_twice": (["prompt-leaderboard", *PROMPT_ARGS, "--prompt", "hello"], "once"),
    "prompt_none": (["prompt-leaderboard", "--train", "plb/pairs.csv"], "name a prompt"),
    "prompt_row_without_test": (["prompt-leaderboard", "--train", "plb/pairs.csv", "--row", "2"], "--test"),
    "prompt_one_model": (["prompt-leaderboard", *PROMPT_ARGS, "--models", "tiny"], "models"),
    "prompt_models_repeated": (["prompt-leaderboard", *PROMPT_ARGS, "--models", "tiny", "tiny"], "models"),
    "prompt_model_empty": (["prompt-leaderboard", *PROMPT_ARGS, "--models", "tiny", ""], "models"),
    "prompt_models_commas": (["prompt-leaderboard", *PROMPT_ARGS, "--models", "tiny,mid-size", "x"], "models"),
    "prompt_groups_unknown": (["prompt-leaderboard", *PROMPT_ARGS, "--set", "features.groups=['telepathy']"], "groups"),
    "prompt_learning_rate": (["prompt-leaderboard", *PROMPT_ARGS, "--set", "lgbm.learning_rate=-1"], "learning_rate"),
    "route_budget_0": (["route", *ROUTE_ARGS, "--budget", "0"], "budget"),
    "route_budget_nan": (["route", *ROUTE_ARGS, "--budget", "nan"], "budget"),
    "route_lam_negative": (["route", *ROUTE_ARGS, "--lam", "-1"], "lam"),
    "route_alpha_0": (["route", *ROUTE_ARGS, "--set", "quality.alpha=0"], "alpha"),
    "route_alpha_inf": (["route", *ROUTE_ARGS, "--set", "quality.alpha=inf"], "alpha"),
    "route_curve_points_1": (["route", *ROUTE_ARGS, "--set", "router.curve_points=1"], "curve_points"),
    "route_folds_1": (["route", *ROUTE_ARGS, "--folds", "1"], "folds"),
    "route_models_repeated": (["route", *ROUTE_ARGS, "--models", "cheap", "cheap"], "models"),
    "route_cost_negative": (["route", *ROUTE_ARGS, "--set", "router.costs={cheap=-1.0}"], "costs"),
    "route_unknown_key": (["route", *ROUTE_ARGS, "--set", "router.bogus=1"], "bogus"),
    # data-dependent refusals, still before any fitting
    "route_more_folds_than_prompts": (["route", *ROUTE_ARGS[:-2], "--folds", "50"], "route/grades.csv", "50 folds"),
    "route_unknown_model": (["route", *ROUTE_ARGS, "--models", "cheap", "gpt-9"], "gpt-9"),
    "route_missing_cost": (["route", *ROUTE_ARGS[:-4], "--costs", "route/costs_plb.toml"], "route/costs_plb.toml", "no cost"),
    "prompt_model_without_answer": (["prompt-leaderboard", *PROMPT_ARGS, "--models", "tiny", "gpt-9"], "gpt-9"),
    "prompt_row_past_end": (
        ["prompt-leaderboard", "--train", "plb/pairs.csv", "--test", "route/pairs.csv", "--row", "999", *PLB],
        "route/pairs.csv",
        "row 999",
    ),
    # a crafted prompt id that is not in the file: refused, naming the file; nothing is written anywhere
    "prompt_crafted_id": (["prompt-leaderboard", "--train", "plb/pairs.csv", "--prompt-id", "../../evil", *PLB], "plb/pairs.csv"),
    # outputs aimed at inputs
    "leaderboard_out_is_battles": (["leaderboard", "--train", "battles.csv", "--out", "battles.csv"], "battles.csv"),
    "leaderboard_out_holds_battles": (["leaderboard", "--train", "battles.csv", "--out", "."], "battles.csv"),
    "leaderboard_out_is_prompt_run": (["leaderboard", "--train", "battles.csv", "--out", "runs/plb"], "runs/plb"),
    "prompt_out_is_pairs": (["prompt-leaderboard", *PROMPT_ARGS, "--out", "plb/pairs.csv"], "plb/pairs.csv"),
    "prompt_out_holds_grades": (["prompt-leaderboard", *PROMPT_ARGS, "--grades", "plb/grades.csv", "--out", "plb"], "plb"),
    "prompt_out_is_leaderboard_run": (["prompt-leaderboard", *PROMPT_ARGS, "--out", "runs/lb"], "runs/lb"),
    "route_out_is_costs": (["route", *ROUTE_ARGS, "--out", "route/costs.toml"], "route/costs.toml"),
    "route_out_inside_grades": (["route", *ROUTE_ARGS, "--out", "route/grades.csv/run"], "route/grades.csv"),
    "route_out_holds_inputs": (["route", *ROUTE_ARGS, "--out", "route"], "route"),
    "route_fold_dir_is_grades": (["route", *ROUTE_ARGS, "--set", "cv.fold_dir='route/grades.csv'"], "route/grades.csv"),
    # outputs that cannot be written at all: refused before any work (they failed once the figures were computed)
    "leaderboard_out_in_proc": (["leaderboard", "--train", "battles.csv", "--out", "/proc/lb1"], "/proc"),
    "leaderboard_out_under_a_file": (["leaderboard", "--train", "battles.csv", "--out", "battles.csv.d/x"], "battles.csv.d"),
    "prompt_out_in_sys": (["prompt-leaderboard", *PROMPT_ARGS, "--out", "/sys/plb1"], "/sys"),
    "prompt_feature_cache_in_proc": (["prompt-leaderboard", *PROMPT_ARGS, "--set", "features.cache_dir='/proc/c'"], "/proc"),
    "route_out_in_proc": (["route", *ROUTE_ARGS, "--out", "/proc/route1"], "/proc"),
    "route_fold_dir_under_a_file": (["route", *ROUTE_ARGS, "--set", "cv.fold_dir='battles.csv.d/folds'"], "battles.csv.d"),
    # seeds a library would reject
    "leaderboard_seed_negative": (["leaderboard", "--train", "battles.csv", "--seed", "-1"], "seed"),
    "prompt_seed_negative": (["prompt-leaderboard", *PROMPT_ARGS, "--seed", "-1"], "seed"),
    "route_seed_negative": (["route", *ROUTE_ARGS, "--seed", "-1"], "seed"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_before_any_work(refused, case):
    argv, *expected = REFUSED[case]
    refused(argv, *expected, prepare=lambda root: (root / "battles.csv.d").write_text("a file, not a folder\n"))


# ------------------------------------------------------------------------------------------- crafted ids


def test_a_crafted_question_id_never_becomes_a_path(tmp_path, monkeypatch):
    """A question_id like ../../evil names the prompt's output files only through safe_name: they stay in the run."""
    pairs_csv(tmp_path)
    frame = pd.read_csv(tmp_path / "pairs.csv", dtype=str)
    crafted = "../../evil/x"
    frame.loc[frame["question_id"] == "q2", "question_id"] = crafted
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["prompt-leaderboard", "--train", "../pairs.csv", "--prompt-id", crafted, "--out", "runs/p", *PLB]
    assert main(argv) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    outside = [p for p in written if not p.startswith("work/runs/") and p != "pairs.csv" and p != "grades.csv"]
    assert outside == [], outside
    names = sorted(p.name for p in (work / "runs" / "p").iterdir())
    csvs = [n for n in names if n.startswith("prompt_") and n.endswith(".csv")]
    assert len(csvs) == 1 and "/" not in csvs[0] and not csvs[0].startswith("prompt_..")
    assert not (tmp_path.parent / "evil").exists()
    manifest = json.loads((work / "runs" / "p" / "manifest.json").read_text())
    assert manifest["kind"] == "prompt-leaderboard" and manifest["facts"]["prompt"] == crafted
