"""`arena` through the CLI: the judgments log is checked before it is used (a log changed by hand is refused, a torn
last line is judged again, a rerun with another judge never reuses a verdict), and every bad input is one line,
exit 2, with nothing written: contradicting or repeated verdicts, grades that are not finite numbers, a pair
with too few shared prompts (found before any verdict is asked), a judge LM that is not a causal LM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cli import main
from tests.test_arena import MODELS, STRENGTH, pairs_frame

EXTRA = ["--prompts-per-comparison", "6", "--set", "arena.coarse_prompts=3", "--set", "arena.bootstrap_rounds=10"]


@pytest.fixture
def pairs_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    pairs_frame().to_csv(path, index=False)
    return path


def write_grades(path, sign: float = 1.0, grade=None):
    rows = [{"question_id": f"q{p}", "model": m, "grade": sign * STRENGTH[m]} for p in range(30) for m in MODELS]
    frame = pd.DataFrame(rows)
    if grade is not None:
        frame["grade"] = frame["grade"].astype(object)
        frame.loc[5, "grade"] = grade
    frame.to_csv(path, index=False)
    return path


def arena(pairs_csv, out, *extra) -> int:
    return main(["arena", "--train", str(pairs_csv), "--out", str(out), *EXTRA, *extra])


def ranking(out) -> list[str]:
    return pd.read_csv(out / "ranking.csv")["model"].tolist()


def the_log(out):
    (log,) = (out / "judgments").glob("*.jsonl")
    return log


def test_a_rerun_with_another_judge_into_the_same_folder_returns_that_judge_s_ranking(pairs_csv, tmp_path):
    out = tmp_path / "arena"
    assert arena(pairs_csv, out, "--grades", str(write_grades(tmp_path / "grades.csv"))) == 0
    best_first = sorted(MODELS, key=lambda m: -STRENGTH[m])
    assert ranking(out) == best_first
    assert arena(pairs_csv, out, "--grades", str(write_grades(tmp_path / "reversed.csv", -1.0))) == 0
    assert ranking(out) == best_first[::-1]  # no verdict of the first judge is reused
    assert len(list((out / "judgments").glob("*.jsonl"))) == 2


def test_a_rerun_with_the_same_judge_repeats_the_run_exactly(pairs_csv, tmp_path):
    out, grades = tmp_path / "arena", str(write_grades(tmp_path / "grades.csv"))
    assert arena(pairs_csv, out, "--grades", grades) == 0
    log, table = the_log(out).read_bytes(), (out / "ranking.csv").read_bytes()
    assert arena(pairs_csv, out, "--grades", grades) == 0
    assert the_log(out).read_bytes() == log and (out / "ranking.csv").read_bytes() == table


def test_a_log_changed_by_hand_is_refused_and_the_earlier_outputs_stay(pairs_csv, tmp_path, capsys):
    out, grades = tmp_path / "arena", str(write_grades(tmp_path / "grades.csv"))
    assert arena(pairs_csv, out, "--grades", grades) == 0
    log = the_log(out)
    lines = log.read_text().splitlines()
    entry = json.loads(lines[3])
    entry["p"] = [0.0, 1.0, 0.0] if entry["p"][0] == 1.0 else [1.0, 0.0, 0.0]  # the verdict flipped
    lines[3] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    table = (out / "ranking.csv").read_bytes()
    capsys.readouterr()
    assert arena(pairs_csv, out, "--grades", grades) == 2
    err = capsys.readouterr().err.strip()
    assert "line 4" in err and "changed" in err and len(err.splitlines()) == 1
    assert (out / "ranking.csv").read_bytes() == table


def test_a_torn_last_line_is_judged_again(pairs_csv, tmp_path):
    out, grades = tmp_path / "arena", str(write_grades(tmp_path / "grades.csv"))
    assert arena(pairs_csv, out, "--grades", grades) == 0
    log = the_log(out)
    whole = log.read_bytes()
    cut = whole.rstrip(b"\n").rfind(b"\n") + 12  # a kill in the middle of the last line
    log.write_bytes(whole[:cut])
    assert arena(pairs_csv, out, "--grades", grades) == 0
    assert log.read_bytes() == whole


def verdict_rows(extra_rows=()):
    rows = [
        {"prompt": f"q{p}", "model_a": x, "model_b": y, "winner_model_a": 1, "winner_model_b": 0, "winner_tie": 0}
        for p in range(30)
        for i, x in enumerate(MODELS)
        for y in MODELS[:i]
    ]
    return pd.DataFrame(rows + list(extra_rows))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # the same comparison again in the same order, with another winner
        ({"prompt": "q0", "model_a": "model1", "model_b": "model0", "winner_model_a": 0, "winner_model_b": 1}, "contradicts row"),
        # (B, A) recorded against (A, B): model0 wins here, model1 won there
        ({"prompt": "q0", "model_a": "model0", "model_b": "model1", "winner_model_a": 1, "winner_model_b": 0}, "contradicts row"),
        ({"prompt": "q0", "model_a": "model1", "model_b": "model1", "winner_model_a": 1, "winner_model_b": 0}, "with itself"),
    ],
)
def test_verdicts_that_contradict_each_other_are_refused(pairs_csv, tmp_path, capsys, extra, message):
    path = tmp_path / "verdicts.csv"
    verdict_rows([extra | {"winner_tie": 0}]).to_csv(path, index=False)
    out = tmp_path / "arena"
    assert arena(pairs_csv, out, "--verdicts", str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "row 841" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_verdicts_recorded_twice_in_agreement_are_used_once(pairs_csv, tmp_path):
    path = tmp_path / "verdicts.csv"
    again = {"prompt": "q0", "model_a": "model0", "model_b": "model1", "winner_model_a": 0, "winner_model_b": 1}
    verdict_rows([again | {"winner_tie": 0}]).to_csv(path, index=False)
    assert arena(pairs_csv, tmp_path / "arena", "--verdicts", str(path)) == 0
    assert ranking(tmp_path / "arena") == sorted(MODELS, reverse=True)


@pytest.mark.parametrize(("grade", "message"), [("nan", "finite number"), ("excellent", "finite number"), ("inf", "finite")])
def test_grades_that_are_not_finite_numbers_are_refused(pairs_csv, tmp_path, capsys, grade, message):
    grades = write_grades(tmp_path / "grades.csv", grade=grade)
    assert arena(pairs_csv, tmp_path / "arena", "--grades", str(grades)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "row 6" in err and "'grade'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "arena").exists()


def test_an_answer_graded_twice_is_refused(pairs_csv, tmp_path, capsys):
    grades = tmp_path / "grades.csv"
    frame = pd.read_csv(write_grades(grades))
    pd.concat([frame, frame.iloc[[3]]]).to_csv(grades, index=False)
    assert arena(pairs_csv, tmp_path / "arena", "--grades", str(grades)) == 2
    assert "graded twice" in capsys.readouterr().err


def test_a_pair_with_too_few_shared_prompts_is_refused_before_any_verdict(tmp_path, capsys):
    frame = pairs_frame()
    answered = frame["question_id"].isin(["q0", "q1", "q2"])
    thin = frame[answered | ~((frame["model_a"] == "model5") | (frame["model_b"] == "model5"))]  # model5: 3 prompts
    path = tmp_path / "thin.csv"
    thin.to_csv(path, index=False)
    grades = write_grades(tmp_path / "grades.csv")
    out = tmp_path / "arena"
    assert arena(path, out, "--grades", str(grades)) == 2
    err = capsys.readouterr().err.strip()
    assert "'model0' and 'model5' share 3 prompts" in err and len(err.splitlines()) == 1
    assert not out.exists()  # no judgments log left behind


def test_a_judge_lm_that_is_not_a_causal_lm_is_one_line(pairs_csv, tmp_path, capsys):
    from transformers import BertConfig

    encoder = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    encoder.architectures = ["BertModel"]  # as an encoder's folder (MiniLM) names it
    encoder.save_pretrained(tmp_path / "bert")
    out = tmp_path / "arena"
    assert arena(pairs_csv, out, "--llm", str(tmp_path / "bert")) == 2
    err = capsys.readouterr().err.strip()
    assert "not a causal language model" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_crowd_judges_are_named_with_the_model_they_speak_for(pairs_csv, tmp_path):
    verdicts = tmp_path / "verdicts.csv"
    verdict_rows().to_csv(verdicts, index=False)  # the higher-numbered model always wins
    crowd = [f"{m}={verdicts}" for m in ("model1", "model3", "model5", "model7")]
    out = tmp_path / "arena"
    extra = ["--crowd", *crowd, "--seed-models", "model1", "model3", "model5"]
    assert arena(pairs_csv, out, *extra) == 0
    assert ranking(out) == sorted(MODELS, reverse=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judges"] == {f"judge:{m}": m for m in ("model1", "model3", "model5", "model7")}
    judges = {json.loads(line)["judge"] for line in the_log(out).read_text().splitlines()[1:]}
    # raw verdicts of each judge, not their average (model7's judge may enter last, with nothing left to judge)
    assert {"judge:model1", "judge:model3", "judge:model5"} <= judges <= set(summary["judges"])


def test_a_crowd_with_too_few_judging_seed_models_is_refused(pairs_csv, tmp_path, capsys):
    verdicts = tmp_path / "verdicts.csv"
    verdict_rows().to_csv(verdicts, index=False)
    extra = ["--crowd", f"model1={verdicts}", f"model3={verdicts}", "--seed-models", "model1", "model3", "model5"]
    assert arena(pairs_csv, tmp_path / "arena", *extra) == 2
    assert "three seed models need a judge" in capsys.readouterr().err


def test_recorded_votes_rank_the_models_of_a_battles_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    strength = {m: i / 2 for i, m in enumerate(MODELS)}
    rows = []
    for n in range(4000):
        x, y = rng.choice(MODELS, size=2, replace=False)
        won = rng.random() < 1 / (1 + np.exp(strength[y] - strength[x]))
        rows.append({"id": f"b{n}", "model_a": x, "model_b": y, "winner": "model_a" if won else "model_b"})
    battles = tmp_path / "battles.csv"
    pd.DataFrame(rows).to_csv(battles, index=False)
    out = tmp_path / "arena"
    argv = ["arena", "--votes", str(battles), "--out", str(out), "--prompts-per-comparison", "40", "--budget", "2000"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judgments"] == 2000 and summary["judgments_insertion"] < 2000
    order = ranking(out)
    assert order[0] == "model7" and order[-1] == "model0"
    # a budget the insertion pass already used up is said, not silently ignored
    small = [*argv[:-1], "10"]
    small[small.index("--out") + 1] = str(tmp_path / "small")
    assert main(small) == 0
    note = json.loads((tmp_path / "small" / "summary.json").read_text())["budget_note"]
    assert "arena.budget 10 is not above the insertion pass's" in note and "nothing left to" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge-run", "nowhere"], "run directory not found"),
        (["--judge-run", "RUN", "--seed-models", "nobody", "model1"], "has no answers"),
        ([], "name a judge"),
    ],
)
def test_a_bad_judge_run_or_seed_model_is_one_line(pairs_csv, tmp_path, capsys, extra, message):
    from competition.predictions import save_predictions
    from competition.rundir import RunKind, staged_unit

    run, frame = tmp_path / "judge_run", pairs_frame()
    with staged_unit(run, RunKind.CV) as staging:  # a judge run is a finished run: its manifest is checked first
        save_predictions(staging / "oof.parquet", frame["id"], np.full((len(frame), 3), 1 / 3))
    extra = [str(run) if e == "RUN" else e for e in extra]
    assert arena(pairs_csv, tmp_path / "arena", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "arena").exists()
