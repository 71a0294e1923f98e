"""Every flag of every command is honoured: the command reads it (or refuses it where it means nothing).

`test_architecture.py` proves a flag sets its config field; that a command then *uses* the field is proved here. Each
command runs for real on tiny inputs (a few dozen rows, 2-3 folds, LightGBM with a few rounds, the tiny test models),
with every one of its flags changed from its default, under a config that records which of its fields the run reads:
each flag's field must be among them. Reads that prove nothing are not counted: a config copying or printing itself
(`dataclasses.replace`, `asdict`, `save_config`, `__eq__`, `__repr__`, range checks in `__post_init__`), and the list of
inputs and outputs a run checks paths against (`inputs()`, `side_outputs()`: a field listed there may still be
ignored, as `ablate` once did with a feature table). A flag that means nothing in some context is refused there (exit 2,
one line naming it: that message is the evidence, and the check that refuses a field is not a use of it).

Where a field is read eagerly whatever it holds (`--name` beside `--out`, `--out` itself), the run's effect is checked
instead: where it wrote. Flags with no field (`--fresh`, `--groups`, `predict --model`) are checked by what they do.
Why not a run per flag, comparing outputs: about 175 command × flag pairs, a dozen of them starting worker processes,
transformer fine-tuning or P2L's encoder; over ten minutes on this project's 2-core machine. One run per command
context costs about a minute. `--config` and `--set` are the config machinery itself (tests/test_config.py) and are
covered by every run here, which sets its fast settings through them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import cli.flags
from cli import COMMANDS, command_parser, main
from competition.config import load_config
from tests.conftest import make_arena_frame

# Reads made by these functions are bookkeeping, not use (see the module docstring).
NOT_USE = {
    "replace",
    "_asdict_inner",
    "asdict",
    "to_dict",
    "save_config",
    "__eq__",
    "__hash__",
    "__repr__",
    "__post_init__",
    "__init__",
    "inputs",
    "side_outputs",
    "output_files",
    "family_inputs",
    "family_side_outputs",
    "check_judge_flags",  # arena reads a setting there to refuse it where it would go unread
}
GENERIC = {"--config", "--set"}
LGBM = [
    "--set",
    "lgbm.max_rounds=8",
    "--set",
    "lgbm.early_stopping_rounds=3",
    "--set",
    "lgbm.min_data_in_leaf=3",
    "--set",
    "lgbm.num_threads=1",
    "--set",
    'features.groups=["lengths","markdown"]',
    "--set",
    "features.cache_dir=''",
]


class Reads:
    """Dotted names of config fields read while recording is on."""

    names: set[str] = set()
    on = False


_recording_classes: dict[type, type] = {}


def recording(value, prefix: str = ""):
    """A copy of a config whose sections and fields note every read (by their dotted name) while `Reads.on`."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    cls = type(value)
    if cls not in _recording_classes:
        names = {f.name for f in dataclasses.fields(cls)}

        def __getattribute__(self, name, _names=names):
            found = object.__getattribute__(self, name)
            if name in _names:
                prefix = object.__getattribute__(self, "_recording_prefix")
                if type(found) in _recording_classes.values():  # a section (also one rebuilt by replace) knows its name
                    object.__setattr__(found, "_recording_prefix", f"{prefix}{name}.")
                if Reads.on and sys._getframe(1).f_code.co_name not in NOT_USE:
                    Reads.names.add(prefix + name)
            return found

        attributes = {"__getattribute__": __getattribute__, "_recording_prefix": ""}
        _recording_classes[cls] = type(f"Recording{cls.__name__}", (cls,), attributes)
    kwargs = {f.name: recording(getattr(value, f.name), f"{prefix}{f.name}.") for f in dataclasses.fields(value) if f.init}
    copy = _recording_classes[cls](**kwargs)
    object.__setattr__(copy, "_recording_prefix", prefix)
    return copy


@pytest.fixture
def recorded(monkeypatch):
    """Configs made by the CLI record their reads; the recording starts once the config is made."""

    def load_recording(*args, **kwargs):
        cfg = recording(load_config(*args, **kwargs))
        Reads.names, Reads.on = set(), True
        return cfg

    monkeypatch.setattr(cli.flags, "load_config", load_recording)
    yield Reads
    Reads.on = False


# ------------------------------------------------------------------------------------------------------- workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny inputs of every command and the runs some commands read (made once; each case works in a copy)."""
    from tiny_models import tiny_backbone, tiny_causal_lm

    from tests.test_inference_engine import tiny_bert
    from tests.test_leaderboard_prompt import pairs_csv
    from tests.test_leaderboard_run import battles_csv
    from tests.test_p2l_cli import sets, train, write_inputs
    from tests.test_routing_router import write_graded

    root = tmp_path_factory.mktemp("flags")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        make_arena_frame(n_prompts=8, rows_per_prompt=4, seed=1).to_csv("train.csv", index=False)
        make_arena_frame(n_prompts=8, rows_per_prompt=4, seed=2).to_csv("train2.csv", index=False)
        make_arena_frame(n_prompts=3, rows_per_prompt=3, seed=3, labels=False, models=False).to_csv("test.csv", index=False)
        unlabeled = make_arena_frame(n_prompts=2, rows_per_prompt=3, seed=4, labels=False)
        unlabeled.assign(prompt=[json.dumps([f"unseen {i}"]) for i in range(len(unlabeled))]).to_csv("unl.csv", index=False)
        common = ["--train", "train.csv", "--test", "test.csv", "--folds", "3", *LGBM]
        assert main(["cv", *common, "--out", "runs/a"]) == 0
        assert main(["cv", *common, "--out", "runs/b", "--set", "lgbm.num_leaves=4"]) == 0
        assert main(["fit", "--train", "train.csv", "--out", "runs/m", *LGBM]) == 0
        assert main(["fit", "--train", "train2.csv", "--out", "runs/m2", *LGBM]) == 0
        assert main(["features", "--train", "train.csv", "--out", "runs/feat", "--rows-per-block", "8"]) == 0
        (root / "plb").mkdir()
        (root / "route").mkdir()
        battles_csv(root / "battles.csv", n=300)
        pairs_csv(root / "plb", n_prompts=9)
        write_graded(root / "route", n_prompts=16)
        (root / "route" / "costs.toml").write_text("cheap = 1.0\nmid = 3.0\nbest = 10.0\n", encoding="utf-8")
        pd.DataFrame({"id": ["n1", "n2"], "prompt": [json.dumps(["write code"]), json.dumps(["say hi"])]}).to_csv(
            root / "route" / "new.csv", index=False
        )
        frame = pd.read_csv("train.csv")
        pd.DataFrame({"id": frame["id"], "politeness": range(len(frame))}).to_csv("props.csv", index=False)
        verdicts = pd.read_csv(root / "plb" / "pairs.csv")
        verdicts.rename(columns={"question_id": "prompt"})[
            ["prompt", "model_a", "model_b", "winner_model_a", "winner_model_b", "winner_tie"]
        ].to_csv("verdicts.csv", index=False)
        (root / "p2l").mkdir()
        write_inputs(root / "p2l")
        assert train(root / "p2l") == 0
        (root / "p2l_sets.json").write_text(json.dumps(sets(root / "p2l")), encoding="utf-8")
        tiny_backbone(root / "llama", "llama")
        tiny_causal_lm(root / "llm")
        (root / "tiny.toml").write_text(
            f'[model]\nmodel_path = "{root / "llama"}"\nmax_length = 48\n'
            '[train]\nmax_steps = 1\ndevice = "cpu"\nteacher_inner_folds = 2\nnum_threads = 1\nonly_folds = [0]\n',
            encoding="utf-8",
        )
        tiny_bert(root / "bert")
        arena_inputs(root / "arena")
        kaggle_inputs(common)
    return root


def kaggle_inputs(common: list[str]) -> None:
    """What submit, bundle and recipe read: a blend of two fitted LightGBM runs, a transformer run with a fold model
    (scored by the inference engine), a wheel to carry, and a recipe with only its cheap stages."""
    for run, leaves in (("runs/sa", []), ("runs/sb", ["--set", "lgbm.num_leaves=4"])):
        assert main(["cv", *common, "--out", run, *leaves]) == 0
        assert main(["fit", "--train", "train.csv", "--out", run, *LGBM, *leaves]) == 0
    assert main(["blend", "--runs", "runs/sa", "runs/sb", "--out", "runs/sbl", "--submission", "subs/sbl.csv"]) == 0
    transformer = ["--config", "tiny.toml", "--train", "train.csv", "--test", "test.csv", "--folds", "2", "--out", "runs/folded"]
    assert main(["train-transformer", *transformer]) == 0
    Path("wheels").mkdir()
    Path("wheels/probe-0.1-py3-none-any.whl").write_bytes(b"carried as is")
    lgbm = "max_rounds = 8\nearly_stopping_rounds = 3\nmin_data_in_leaf = 3\nnum_threads = 1\ninner_folds = 2\n"
    Path("recipe.toml").write_text(
        "[teacher]\nenabled = false\n[reward]\nenabled = false\n"
        '[pairwise]\nenabled = true\ngroups = ["lengths", "markdown"]\n'
        '[lightgbm.features]\ngroups = ["lengths", "markdown"]\ncache_dir = ""\n'
        f"[lightgbm.model]\n{lgbm}",
        encoding="utf-8",
    )


def arena_inputs(folder: Path) -> None:
    """Eight models on 30 prompts, their grades, and two crowd judges' verdicts: one agreeing with the grades, one
    contradicting them (so a search per judge lands elsewhere than the crowd's search)."""
    from tests.test_arena import pairs_frame
    from tests.test_arena_inputs import verdict_rows, write_grades

    folder.mkdir()
    pairs_frame().to_csv(folder / "pairs.csv", index=False)
    write_grades(folder / "grades.csv")
    honest = verdict_rows()
    honest.to_csv(folder / "honest.csv", index=False)
    flipped = {"winner_model_a": honest["winner_model_b"], "winner_model_b": honest["winner_model_a"]}
    honest.assign(**flipped).to_csv(folder / "contrarian.csv", index=False)


# ------------------------------------------------------------------------------------------------------------ cases


@dataclass
class Case:
    argv: list[str]
    flags: tuple[str, ...]  # what this run gives evidence for
    exit: int = 0  # 2: the flags are refused in this context
    check: Callable[[Path], None] | None = None  # the effect, for flags whose field says nothing (see docstring)
    refused_text: str = ""
    before: list[str] | None = None  # a command run first, unrecorded (what --fresh discards)


def wrote(path: str) -> Callable[[Path], None]:
    return lambda root: pytest.fail(f"nothing written at {path}") if not (root / path).exists() else None


def p2l_sets(root: Path) -> list[str]:
    return json.loads((root / "p2l_sets.json").read_text())


TEACHER = ["--teacher", "runs/a", "--teacher-weight", "0.3"]
TRAINING = ["--train", "train2.csv", "--test", "test.csv", "--folds", "2", "--seed", "7", "--max-rows", "28", "--model", "lgbm"]


def ablation_of(groups: list[str]) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        dropped = pd.read_csv(root / "runs/ab/ablation/ablation.csv")["dropped"].tolist()
        assert dropped == ["(none)", *groups], dropped

    return check


def predicted_with(other: str) -> Callable[[Path], None]:
    """`predict --model` took the named model: its submission differs from the first model's."""

    def check(root: Path) -> None:
        assert main(["predict", "--model", "runs/m", "--test", "test.csv", "--submission", "subs/first.csv"]) == 0
        assert (root / "subs/first.csv").read_bytes() != (root / other).read_bytes()

    return check


def scored_again(root: Path) -> None:
    summary = json.loads((root / "runs/inf/infer_summary.json").read_text())
    assert summary["shards_skipped"] == 0 and summary["shards_scored"] == summary["shards"]


ARENA_SMALL = ["--prompts-per-comparison", "3", "--set", "arena.coarse_prompts=2"]  # tiny files share few prompts
ARENA_FAST = ["--prompts-per-comparison", "6", "--set", "arena.coarse_prompts=3", "--set", "arena.bootstrap_rounds=10"]
GRADED = ["arena", "--train", "arena/pairs.csv", "--grades", "arena/grades.csv", *ARENA_FAST, "--out", "runs/ar"]
CROWD = ["--crowd", "model7=arena/honest.csv", "model6=arena/contrarian.csv", "model5=arena/contrarian.csv"]
VOTES = ["arena", "--votes", "battles.csv", *ARENA_SMALL, "--set", "arena.bootstrap_rounds=10", "--out", "runs/ar"]
LENGTHS = ["arena", "--train", "plb/pairs.csv", "--grades", "plb/grades.csv", *ARENA_SMALL, "--out", "runs/ar"]


def arena_outputs(root: Path, out: str) -> tuple[bytes, bytes]:
    (log,) = (root / out / "judgments").glob("*.jsonl")
    return (root / out / "ranking.csv").read_bytes(), log.read_bytes()


def arena_differs_from(without: list[str]) -> Callable[[Path], None]:
    """The flag changed the ranking or the verdicts asked: the same run without it ends elsewhere."""

    def check(root: Path) -> None:
        assert main(["runs/without" if arg == "runs/ar" else arg for arg in without]) == 0
        assert arena_outputs(root, "runs/ar") != arena_outputs(root, "runs/without")

    return check


def crowd_judged(root: Path) -> None:
    """Crowd judges gave verdicts (the log names the judge of every verdict; one whose model is inserted last never
    speaks)."""
    log = arena_outputs(root, "runs/ar")[1].decode().splitlines()
    judges = {json.loads(line).get("judge") for line in log}
    assert judges & {"judge:model7", "judge:model6", "judge:model5"}, judges


def spent(budget: int) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        summary = json.loads((root / "runs/ar/summary.json").read_text())
        assert summary["judgments_insertion"] < budget == summary["judgments"], summary

    return check


def ranked_the_battles(root: Path) -> None:
    assert set(pd.read_csv(root / "runs/ar/ranking.csv")["model"]) == {"alpha", "beta", "gamma", "delta"}


def wrote_all(*paths: str) -> Callable[[Path], None]:
    def check(root: Path) -> None:
        for path in paths:
            wrote(path)(root)

    return check


def submit_scored_again(root: Path) -> None:
    facts = json.loads((root / "runs/sub/submit_summary.json").read_text())["components"]["folded"]["model0"]
    assert facts["shards_scored"] == facts["shards"] > 0, facts


def bundled(root: Path) -> None:
    """The blend's runs, the wheel and the entry point's defaults are in the bundle."""
    import tomllib

    bundle = root / "bundles/b"
    inside = tomllib.loads((bundle / "project/submit.toml").read_text())
    assert inside["scoring"]["devices"] == "cpu:1" and inside["time_budget_s"] == 60, inside
    assert (bundle / "wheels/probe-0.1-py3-none-any.whl").read_bytes() == b"carried as is"
    assert all((bundle / "project/runs" / run / "manifest.json").is_file() for run in ("sbl", "sa", "sb"))


def recipe_made(root: Path) -> None:
    """The recipe ran on the rows, folds and seed it was given and submitted the test file where it was told."""
    import tomllib

    report = json.loads((root / "runs/rec/report.json").read_text())
    assert (report["rows"], report["folds"]) == (28, 2), report
    for stage in ("lightgbm", "pairwise"):
        stage_cfg = tomllib.loads((root / "runs/rec" / stage / "config.toml").read_text())
        assert stage_cfg["data"]["train"] == "train2.csv" and stage_cfg["cv"]["seed"] == 7, stage_cfg
    ids = pd.read_csv(root / "subs/r.csv")["id"].astype(str).tolist()
    assert ids == pd.read_csv(root / "test.csv")["id"].astype(str).tolist()


SUBMIT = ["submit", "--test", "test.csv", "--submission", "subs/s.csv", "--out", "runs/sub"]
ENGINE = [*SUBMIT, "--runs", "runs/folded", "--base-model", "llama"]
RECIPE = ["recipe", "--config", "recipe.toml", "--test", "test.csv", "--folds", "2"]
INFER = ["infer", "--test", "test.csv", "--model-path", "bert", "--out", "runs/inf", "--max-length", "64"]
PLB = ["prompt-leaderboard", "--train", "plb/pairs.csv", *LGBM[:8], "--set", 'features.groups=["lengths"]']
ROUTE = ["route", "--train", "route/pairs.csv", "--grades", "route/grades.csv", "--costs", "route/costs.toml"]
CASES: dict[str, list[Case]] = {
    "cv": [
        Case(["cv", *TRAINING, *TEACHER, *LGBM, "--out", "runs/x"], ("--train", "--test", "--folds", "--seed", "--max-rows")),
        Case(["cv", *TRAINING, *TEACHER, *LGBM, "--out", "runs/x"], ("--model", "--teacher", "--teacher-weight")),
        Case(["cv", "--train", "train.csv", "--test", "test.csv", "--folds", "3", "--features-table", "runs/feat", *LGBM[:8]], ("--features-table",)),
        Case(["cv", "--train", "train.csv", "--test", "test.csv", "--folds", "2", *LGBM, "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case(["cv", "--train", "train.csv", "--test", "test.csv", "--folds", "2", *LGBM, "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "run": [
        Case(["run", *TRAINING, *TEACHER, *LGBM, "--out", "runs/x", "--submission", "subs/x.csv"], ("--train", "--test")),
        Case(
            ["run", *TRAINING, *TEACHER, *LGBM, "--out", "runs/x", "--submission", "subs/x.csv", "--chunk-rows", "5"],
            ("--folds", "--seed", "--max-rows", "--model", "--teacher", "--teacher-weight", "--chunk-rows"),
            check=wrote("subs/x.csv"),
        ),
        Case(["run", "--train", "train.csv", "--test", "test.csv", "--folds", "3", "--features-table", "runs/feat", *LGBM[:8]], ("--features-table",)),
        Case(["run", "--train", "train.csv", "--test", "test.csv", "--folds", "2", *LGBM, "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case(["run", "--train", "train.csv", "--test", "test.csv", "--folds", "2", *LGBM, "--out", "else/where"], ("--out",), check=wrote("else/where")),
        Case(["run", "--train", "train.csv", "--test", "test.csv", "--folds", "2", *LGBM, "--submission", "s/x.csv"], ("--submission",), check=wrote("s/x.csv")),
    ],
    "fit": [
        Case(
            ["fit", "--train", "train2.csv", "--seed", "7", "--max-rows", "28", "--model", "lgbm", *TEACHER, *LGBM],
            ("--train", "--seed", "--max-rows", "--model", "--teacher", "--teacher-weight"),
        ),
        Case(["fit", "--train", "train.csv", "--features-table", "runs/feat", *LGBM[:8]], ("--features-table",)),
        Case(["fit", "--train", "train.csv", *LGBM, "--name", "named"], ("--name",), check=wrote("runs/named/model")),
        Case(["fit", "--train", "train.csv", *LGBM, "--out", "else/where"], ("--out",), check=wrote("else/where/model")),
    ],
    "predict": [
        Case(
            ["predict", "--model", "runs/m2", "--test", "test.csv", "--submission", "subs/p.csv", "--chunk-rows", "4", "--base-model", "llama"],
            ("--test", "--chunk-rows", "--base-model"),
        ),
        Case(
            ["predict", "--model", "runs/m2", "--test", "test.csv", "--submission", "subs/p.csv"],
            ("--model", "--submission"),
            check=predicted_with("subs/p.csv"),
        ),
        Case(["predict", "--model", "runs/m", "--test", "test.csv", "--name", "named"], ("--name",), check=wrote("submissions/named.csv")),
    ],
    "ablate": [
        Case(
            ["ablate", "--train", "train2.csv", "--folds", "2", "--seed", "7", "--max-rows", "28", *TEACHER, *LGBM],
            ("--train", "--folds", "--seed", "--max-rows", "--teacher", "--teacher-weight"),
        ),
        Case(
            ["ablate", "--train", "train.csv", "--folds", "2", *LGBM, "--groups", "markdown", "--out", "runs/ab"],
            ("--groups", "--out"),
            check=ablation_of(["markdown"]),
        ),
        Case(["ablate", "--train", "train.csv", "--folds", "2", *LGBM, "--name", "named"], ("--name",), check=wrote("runs/named/ablation")),
    ],
    "blend": [
        Case(["blend", "--runs", "runs/a", "runs/b", "--temperature", "--submission", "subs/b.csv"], ("--runs", "--temperature")),
        Case(["blend", "--runs", "runs/a", "runs/b", "--submission", "subs/b.csv"], ("--submission",), check=wrote("subs/b.csv")),
        Case(["blend", "--runs", "runs/a", "runs/b", "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case(["blend", "--runs", "runs/a", "runs/b", "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "leaderboard": [
        Case(
            ["leaderboard", "--train", "battles.csv", "--tie-model", "davidson", "--bootstrap", "5", "--seed", "3"],
            ("--train", "--tie-model", "--bootstrap", "--seed"),
        ),
        Case(["leaderboard", "--train", "battles.csv", "--max-rows", "100", "--bootstrap", "0"], ("--max-rows",)),
        Case(["leaderboard", "--train", "battles.csv", "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case(["leaderboard", "--train", "battles.csv", "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "prompt-leaderboard": [
        Case(
            [*PLB, "--prompt-id", "q1", "--models", "tiny", "verbose-pro", "--grades", "plb/grades.csv"],
            ("--train", "--prompt-id", "--models", "--grades"),
        ),
        Case([*PLB, "--prompt-id", "q2", "--evaluate", "--folds", "3", "--seed", "5", "--max-rows", "60"], ("--evaluate", "--folds", "--seed", "--max-rows")),
        Case([*PLB, "--prompt", "question number 3 about topic 3"], ("--prompt",)),
        Case([*PLB, "--row", "2", "--test", "plb/pairs.csv"], ("--row", "--test")),
        Case(["prompt-leaderboard", "--p2l", "p2l/runs/p2l", "--prompt", "write a poem"], ("--p2l",)),
        Case(["prompt-leaderboard", "--p2l", "p2l/runs/p2l", "--prompts", "p2l/new.csv"], ("--prompts",)),
        *[
            Case(["prompt-leaderboard", "--p2l", "p2l/runs/p2l", "--prompt", "hi", *extra], (extra[0],), exit=2, refused_text=extra[0])
            for extra in (["--evaluate"], ["--grades", "plb/grades.csv"], ["--train", "plb/pairs.csv"], ["--max-rows", "5"], ["--folds", "3"], ["--seed", "5"])
        ],
        Case([*PLB, "--prompt-id", "q1", "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case([*PLB, "--prompt-id", "q1", "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "route": [
        Case([*ROUTE, "--test", "route/new.csv", "--budget", "5", "--models", "cheap", "best", "--folds", "3", "--seed", "5"], ("--train", "--grades", "--costs", "--test", "--budget", "--models", "--folds", "--seed")),
        Case([*ROUTE, "--test", "route/new.csv", "--lam", "0.1"], ("--lam",)),
        Case(["route", "--train", "p2l/battles.csv", "--grades", "p2l/grades.csv", "--costs", "p2l/costs.toml", "--p2l", "p2l/runs/p2l", "--folds", "3"], ("--p2l",)),
        Case([*ROUTE, "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case([*ROUTE, "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "features": [
        Case(["features", "--train", "train2.csv", "--max-rows", "20", "--rows-per-block", "5"], ("--train", "--max-rows", "--rows-per-block")),
        Case(["features", "--train", "train.csv", "--engine", "ray", "--ray-address", "127.0.0.1:1"], ("--engine", "--ray-address"), exit=2, refused_text="127.0.0.1:1"),
        Case(["features", "--train", "train.csv", "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case(["features", "--train", "train.csv", "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "arena": [
        Case(["arena", "--train", "plb/pairs.csv", "--grades", "plb/grades.csv", "--noise", "0.5", "--seed-models", "tiny", "mid-size", "--prompts-per-comparison", "3", "--set", "arena.coarse_prompts=2"], ("--train", "--grades", "--noise", "--seed-models", "--prompts-per-comparison")),
        # Recorded verdicts and a run's predictions judge only the pairs the files hold: refused, naming that judge.
        Case(["arena", "--train", "plb/pairs.csv", "--verdicts", "verdicts.csv", *ARENA_SMALL], ("--verdicts",), exit=2, refused_text="judge 'verdicts.csv'"),
        Case(["arena", "--train", "train.csv", "--judge-run", "runs/a", *ARENA_SMALL], ("--judge-run",), exit=2, refused_text="judge 'a'"),
        Case(["arena", "--train", "train.csv", "--judge-model", "runs/m", *ARENA_SMALL], ("--judge-model",)),
        Case(["arena", "--train", "plb/pairs.csv", "--llm", "llm", "--prompts-per-comparison", "1", "--set", "arena.coarse_prompts=1"], ("--llm",)),
        Case(["arena", "--train", "plb/pairs.csv", "--grades", "plb/grades.csv", "--name", "named", *ARENA_SMALL], ("--name",), check=wrote("runs/named")),
        # judge.crowd, judge.votes, arena.per_judge_search, arena.budget and arena.style_features are read whatever they
        # hold (to pick the judges, the data, the settings): their effect is checked instead.
        Case([*GRADED, *CROWD], ("--crowd",), check=crowd_judged),
        Case([*GRADED, *CROWD, "--per-judge-search"], ("--per-judge-search",), check=arena_differs_from([*GRADED, *CROWD])),
        Case([*GRADED, "--budget", "200"], ("--budget",), check=spent(200)),
        Case([*VOTES, "--budget", "60"], ("--votes",), check=ranked_the_battles),
        Case([*LENGTHS, "--style", "lengths__logratio_tokens"], ("--style",), check=arena_differs_from(LENGTHS)),
        # Settings this judge set would not read are refused, naming the flag.
        Case([*GRADED, "--per-judge-search"], ("--per-judge-search",), exit=2, refused_text="--per-judge-search is not read"),
        Case([*VOTES, "--train", "plb/pairs.csv"], ("--train",), exit=2, refused_text="--train is not read"),
        Case([*VOTES, "--crowd", "alpha=verdicts.csv"], ("--crowd",), exit=2, refused_text="--crowd is not read"),
        Case([*VOTES, "--style", "lengths__logratio_tokens"], ("--style",), exit=2, refused_text="recorded votes have none"),
        Case(["arena", "--train", "plb/pairs.csv", "--verdicts", "verdicts.csv", "--noise", "1", *ARENA_SMALL], ("--noise",), exit=2, refused_text="--noise is not read"),
        Case(["arena", "--train", "plb/pairs.csv", "--grades", "plb/grades.csv", "--out", "else/where", *ARENA_SMALL], ("--out",), check=wrote("else/where")),
    ],
    "submit": [
        Case([*SUBMIT, "--blend", "runs/sbl", "--runs", "runs/sa", "runs/sb"], ("--blend", "--runs", "--test")),
        Case([*ENGINE, "--devices", "cpu:1", "--threads", "1", "--dtype", "float32", "--token-budget", "500"], ("--base-model", "--devices", "--threads", "--dtype", "--token-budget")),
        # no shard may start after a time budget that is already spent: nothing scored, nothing written
        Case([*ENGINE, "--time-budget", "1e-9"], ("--time-budget",), exit=2, refused_text="time budget ran out"),
        Case([*ENGINE, "--fresh"], ("--fresh",), check=submit_scored_again, before=ENGINE),
        Case([*SUBMIT, "--runs", "runs/sa"], ("--submission", "--out"), check=wrote_all("subs/s.csv", "runs/sub/submit_summary.json")),
        # a LightGBM run scores in one call: the transformer-only flags would be unread there, so they are refused
        Case([*SUBMIT, "--runs", "runs/sa", "--time-budget", "60"], ("--time-budget",), exit=2, refused_text="no run to score holds a transformer"),
        Case(["submit", "--test", "test.csv", "--runs", "runs/sa", "--submission", "subs/n.csv", "--name", "named"], ("--name",), check=wrote("runs/submit/named")),
    ],
    "bundle": [
        Case(["bundle", "--blend", "runs/sbl", "--out", "bundles/b", "--wheels-dir", "wheels", "--devices", "cpu:1", "--time-budget", "60"], ("--blend", "--out", "--wheels-dir", "--devices", "--time-budget"), check=bundled),
        Case(["bundle", "--runs", "runs/folded", "--base-model", "llama", "--out", "bundles/t"], ("--runs", "--base-model")),
        Case(["bundle", "--runs", "runs/sa", "--name", "named"], ("--name",), check=wrote("bundles/named")),
    ],
    "recipe": [
        Case([*RECIPE, "--train", "train2.csv", "--seed", "7", "--max-rows", "28", "--out", "runs/rec", "--submission", "subs/r.csv"], ("--train", "--test", "--folds", "--seed", "--max-rows", "--out", "--submission"), check=recipe_made),
        Case([*RECIPE, "--train", "train.csv", "--name", "named"], ("--name",), check=wrote("runs/named")),
    ],
    "dissect": [
        Case(
            ["dissect", "--train", "train.csv", "--properties", "headers", "bold", "--properties-table", "props.csv", "--ties", "half", "--judges", "runs/a", "--min-pairs", "10"],
            ("--train", "--properties", "--properties-table", "--ties", "--judges", "--min-pairs"),
        ),
        Case(["dissect", "--train", "train.csv", "--scenario", "reasoning", "--min-pairs", "1000"], ("--scenario", "--min-pairs"), exit=2, refused_text="scenario 'reasoning'"),
        Case(["dissect", "--train", "train.csv", "--prior", "laplace", "--set", "dissect.mcmc_steps=200"], ("--prior",)),
        Case(["dissect", "--train", "train.csv", "--row", "100001", "--model", "runs/m"], ("--row", "--model")),
        Case(["dissect", "--train", "train.csv", "--name", "named"], ("--name",), check=wrote("runs/named")),
        Case(["dissect", "--train", "train.csv", "--out", "else/where"], ("--out",), check=wrote("else/where")),
    ],
    "infer": [
        Case([*INFER, "--dtype", "float32", "--token-budget", "500", "--swap-average", "--devices", "cpu:2", "--placement", "split", "--base-model", "llama", "--accept-merged-4bit"], ("--test", "--model-path", "--max-length", "--dtype", "--token-budget", "--swap-average", "--devices", "--placement", "--base-model", "--accept-merged-4bit")),
        Case([*INFER, "--backend", "vllm"], ("--backend",), exit=2, refused_text="vLLM"),
        Case([*INFER, "--engine", "ray", "--ray-address", "127.0.0.1:1"], ("--engine", "--ray-address"), exit=2, refused_text="127.0.0.1:1"),
        Case([*INFER, "--fresh"], ("--fresh", "--out"), check=scored_again, before=INFER),
        Case(["infer", "--test", "test.csv", "--model-path", "bert", "--max-length", "64", "--name", "named"], ("--name",), check=wrote("runs/named")),
    ],
    "train-transformer": [
        Case(["train-transformer", "--config", "tiny.toml", "--train", "train2.csv", "--test", "test.csv", "--folds", "2", "--seed", "7", "--max-rows", "28", "--teacher", "runs/a", "--teacher-weight", "0.5", "--unlabeled", "unl.csv", "--out", "runs/tt"], ("--train", "--test", "--folds", "--seed", "--max-rows", "--teacher", "--teacher-weight", "--unlabeled", "--out")),
        Case(["train-transformer", "--config", "tiny.toml", "--train", "train.csv", "--test", "test.csv", "--folds", "2", "--name", "named"], ("--name",), check=wrote("runs/named")),
    ],
    "train-p2l": [
        Case(["train-p2l", "--train", "p2l/battles.csv", "--test", "p2l/test_pairs.csv", "--grades", "p2l/grades.csv", "--folds", "2", "--seed", "7", "--max-rows", "80", "--out", "runs/p2l", "P2L_SETS"], ("--train", "--test", "--grades", "--folds", "--seed", "--max-rows", "--out")),
        Case(["train-p2l", "--train", "p2l/battles.csv", "--test", "", "--folds", "2", "--name", "named", "P2L_SETS"], ("--name",), check=wrote("runs/named")),
    ],
}  # fmt: skip


def declared(command: str) -> set[str]:
    _, module = command_parser(command)
    return {flag.name for flag in module.FLAGS[command]}


def field_of(command: str, flag: str) -> str | None:
    _, module = command_parser(command)
    return next(f.field for f in module.FLAGS[command] if f.name == flag)


NO_CASES_YET: dict[str, set[str]] = {}  # a command or flag without a case yet, named one by one


@pytest.mark.parametrize("command", [c for c in COMMANDS if NO_CASES_YET.get(c) != set()])
def test_every_flag_of_every_command_has_a_case(command):
    covered = {flag for case in CASES.get(command, []) for flag in case.flags} | GENERIC | NO_CASES_YET.get(command, set())
    assert declared(command) - covered == set(), f"{command}: flags without evidence that the command honours them"


@pytest.mark.parametrize(("command", "index"), [(c, i) for c, cases in CASES.items() for i in range(len(cases))])
def test_the_command_reads_every_flag_it_is_given(workspace, tmp_path, monkeypatch, recorded, command, index, capsys):
    case = CASES[command][index]
    root = tmp_path / "ws"
    shutil.copytree(workspace, root, symlinks=True)
    monkeypatch.chdir(root)
    argv = [a for arg in case.argv for a in (p2l_sets(root) if arg == "P2L_SETS" else [arg])]
    if "--test" in argv and argv[0] == "train-p2l":
        make_arena_frame(n_prompts=2, rows_per_prompt=2, seed=8, labels=False).to_csv("p2l/test_pairs.csv", index=False)
    if case.before is not None:
        recorded.on = False
        assert main(case.before) == 0
    code = main(argv)
    recorded.on = False
    err = capsys.readouterr().err
    assert code == case.exit, err
    if case.exit == 2:
        assert case.refused_text in err, err
    for flag in case.flags:
        name = field_of(command, flag)
        if name is not None and case.check is None and case.exit == 0:  # a refusal's evidence is its message
            assert name in recorded.names, f"{command} {flag}: the run never read {name}"
    if case.check is not None:
        case.check(root)


def test_the_recorder_sees_a_read_and_ignores_bookkeeping():
    from stages.training import training_config

    cfg = recording(load_config(training_config("lgbm")))
    Reads.names, Reads.on = set(), True
    try:
        cfg.inputs()
        dataclasses.replace(cfg, name="other")
        assert Reads.names == set()
        _ = cfg.data.max_rows
        assert Reads.names == {"data", "data.max_rows"}
    finally:
        Reads.on = False
