"""Hostile input to train-p2l, prompt-leaderboard --p2l and route --p2l, through `cli.main`: exit code 2,
exactly one line on stderr, nothing written, every earlier file byte-identical. A model name from the data never
becomes a path."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cli import main
from competition.rundir import file_digest
from tests.test_p2l import simulated_battles, write_battles_csv
from tests.test_p2l_cli import sets, train, write_inputs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("p2l_hostile")
    write_inputs(root)
    assert train(root) == 0
    frame = pd.read_csv(root / "battles.csv")
    frame.drop(columns=["model_b"]).to_csv(root / "no_model_b.csv", index=False)
    frame.assign(model_a=frame["model_a"].where(frame.index != 4, " ")).to_csv(root / "empty_name.csv", index=False)
    frame.assign(model_b=frame["model_b"].where(frame.index != 6, frame["model_a"])).to_csv(root / "self_battle.csv", index=False)
    (root / "utf16.csv").write_bytes(frame.head(5).to_csv(index=False).encode("utf-16"))
    return root


def snapshot(root) -> dict:
    return {p: file_digest(p) for p in root.rglob("*") if p.is_file()}


def refused(root, capsys, argv: list[str], *expected: str) -> None:
    before = snapshot(root)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    assert snapshot(root) == before
    assert not [p for p in root.rglob("*") if p.name.endswith((".tmp", ".staging"))]


@pytest.mark.parametrize(
    ("train_file", "expected"),
    [
        ("no_model_b.csv", "model_b"),
        ("empty_name.csv", "row 5"),
        ("self_battle.csv", "row 7"),
        ("utf16.csv", "UTF-16"),
        ("missing.csv", "missing.csv"),
    ],
)
def test_bad_battles_are_one_line(root, capsys, train_file, expected):
    argv = ["train-p2l", "--train", str(root / train_file), "--folds", "3", "--out", str(root / "runs" / "bad")]
    refused(root, capsys, [*argv, *sets(root)], expected)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("encoder.kind='bogus'", "kind"),
        ("encoder.model_path='/nowhere/model'", "model directory not found"),
        ("encoder.model_package='no_such_package_xyz'", "not installed"),
        ("head.l2_embedding=[]", "l2_embedding"),
        ("head.tie_model='half'", "tie_model"),
        ("encoder.lora=true", "lora"),
    ],
)
def test_bad_settings_are_one_line(root, capsys, setting, expected):
    argv = ["train-p2l", "--train", str(root / "battles.csv"), "--out", str(root / "runs" / "bad"), "--set", setting]
    refused(root, capsys, argv, expected)


def test_an_output_over_the_input_is_refused(root, capsys):
    refused(root, capsys, ["train-p2l", "--train", str(root / "battles.csv"), "--out", str(root)], "input")


def p2l_board(root, *extra: str) -> list[str]:
    return ["prompt-leaderboard", "--p2l", str(root / "runs" / "p2l"), *extra, "--out", str(root / "plb_bad")]


def test_prompt_leaderboard_refuses_what_p2l_cannot_rank(root, capsys):
    refused(root, capsys, p2l_board(root, "--prompt-id", "q1"), "coefficients.parquet")
    refused(root, capsys, p2l_board(root), "name either one prompt")
    refused(root, capsys, p2l_board(root, "--prompt", "hi", "--prompts", str(root / "new.csv")), "name either one prompt")
    refused(root, capsys, p2l_board(root, "--prompt", "hi", "--models", "coder", "ghost"), "'ghost' is not in this P2L run")
    refused(root, capsys, p2l_board(root, "--prompts", str(root / "utf16.csv")), "UTF-16")
    refused(root, capsys, ["prompt-leaderboard", "--prompts", str(root / "new.csv")], "--prompts needs --p2l")


def test_a_missing_torn_or_foreign_run_is_one_line(root, capsys, tmp_path):
    refused(root, capsys, ["prompt-leaderboard", "--p2l", str(root / "nowhere"), "--prompt", "hi"], "not found")
    refused(root, capsys, ["prompt-leaderboard", "--p2l", str(root / "runs" / "names_missing"), "--prompt", "hi"], "not found")
    route = [
        "route",
        "--train",
        str(root / "battles.csv"),
        "--grades",
        str(root / "grades.csv"),
        "--costs",
        str(root / "costs.toml"),
    ]
    refused(
        root,
        capsys,
        [*route, "--p2l", str(root / "runs" / "p2l" / "folds" / "fold0"), "--out", str(tmp_path / "r")],
        "'fold' run",
    )
    torn = root / "torn"
    torn.mkdir()
    for path in (root / "runs" / "p2l").iterdir():
        if path.is_file():
            (torn / path.name).write_bytes(path.read_bytes())
    (torn / "coefficients.parquet").write_bytes(b"torn")
    refused(root, capsys, ["prompt-leaderboard", "--p2l", str(torn), "--prompt", "hi"], "does not match the manifest")


def test_route_refuses_prompts_the_run_never_scored(root, capsys, tmp_path):
    other = simulated_battles(n_prompts=6, repeats=1, seed=7, start=900)
    write_battles_csv(tmp_path / "pairs.csv", other)
    grades = pd.DataFrame(
        [{"question_id": q, "model": m, "grade": 5} for q in other["question_id"].unique() for m in ("coder", "poet")]
    )
    grades.to_csv(tmp_path / "grades.csv", index=False)
    argv = [
        "route",
        "--train",
        str(tmp_path / "pairs.csv"),
        "--grades",
        str(tmp_path / "grades.csv"),
        "--costs",
        str(root / "costs.toml"),
    ]
    argv += ["--p2l", str(root / "runs" / "p2l"), "--folds", "3", "--out", str(tmp_path / "route")]
    refused(root, capsys, argv, "have no coefficients in this P2L run")


def test_a_model_name_from_the_data_never_becomes_a_path(root, tmp_path):
    frame = simulated_battles(n_prompts=9, repeats=1, seed=11)
    evil = "../../evil/model"
    frame[["model_a", "model_b"]] = frame[["model_a", "model_b"]].replace("weak", evil)
    write_battles_csv(tmp_path / "battles.csv", frame)
    argv = ["train-p2l", "--train", str(tmp_path / "battles.csv"), "--folds", "3", "--out", str(tmp_path / "a" / "b" / "run")]
    assert main([*argv, *sets(tmp_path)]) == 0
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "evil").exists()
    table = pd.read_parquet(tmp_path / "a" / "b" / "run" / "coefficients.parquet")
    assert evil in set(table["model"])
    board = ["prompt-leaderboard", "--p2l", str(tmp_path / "a" / "b" / "run"), "--prompt", "write a poem"]
    assert main([*board, "--out", str(tmp_path / "a" / "b" / "board")]) == 0
    assert evil in set(pd.read_csv(next((tmp_path / "a" / "b" / "board").glob("prompt_*.csv")))["model"])
    assert json.loads((tmp_path / "a" / "b" / "board" / "manifest.json").read_text())["kind"] == "prompt-leaderboard"


def test_an_edited_fold_list_in_the_manifest_is_one_line(root, capsys, tmp_path):
    """P2L's uses read the fold models the manifest lists: a hand-edited list is caught by the manifest's own digest."""
    import shutil

    run = tmp_path / "p2l"
    shutil.copytree(root / "runs" / "p2l", run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["facts"]["folds"] = [0, 1, 2, 7]
    (run / "manifest.json").write_text(json.dumps(manifest, indent=1))
    board = ["prompt-leaderboard", "--p2l", str(run), "--prompt", "write a poem", "--out", str(tmp_path / "board")]
    refused(root, capsys, board, "manifest.json", "own digest")
    assert not (tmp_path / "board").exists()


def test_prompts_sharing_one_text_are_a_run_not_a_crash(root, tmp_path):
    """Every prompt empty ("[]"), so every question id shares one text: held-out coefficients come one per prompt
    group (they were computed per distinct text, an internal error after the folds were written)."""
    frame = pd.read_csv(root / "battles.csv").assign(prompt="[]")
    frame.to_csv(tmp_path / "empty_prompts.csv", index=False)
    argv = ["train-p2l", "--train", str(tmp_path / "empty_prompts.csv"), "--folds", "3", "--out", str(tmp_path / "run")]
    assert main([*argv, *sets(tmp_path)]) == 0
    table = pd.read_parquet(tmp_path / "run" / "coefficients.parquet")
    assert table["group"].nunique() == frame["question_id"].nunique()


@pytest.mark.parametrize("rows", [1, 3])
def test_a_tiny_battles_file_is_one_line(root, capsys, tmp_path, rows):
    pd.read_csv(root / "battles.csv").head(rows).to_csv(tmp_path / "tiny.csv", index=False)
    argv = ["train-p2l", "--train", str(tmp_path / "tiny.csv"), "--folds", "2", "--out", str(root / "runs" / "tiny")]
    refused(root, capsys, [*argv, *sets(root)], "")
