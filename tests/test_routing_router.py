"""Routing: perfect predictions give the oracle, budgets hold, unavailable models are never chosen."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analysis.routing.router import draw_from_policy, mean_cost, route_budget, route_lambda, route_per_query
from cli import main as cli_main
from competition.config import load_config
from competition.errors import InputError

COSTS = np.array([0.2, 2.0, 2.0, 30.0, 60.0])


def grades(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 11, (n, len(COSTS))).astype(float)


def test_perfect_predictions_reproduce_the_cheapest_per_prompt_oracle():
    g = grades()
    choice = route_lambda(g, COSTS, 0.0)
    rows = np.arange(len(g))
    assert np.array_equal(g[rows, choice], g.max(axis=1))
    best = g == g.max(axis=1, keepdims=True)
    assert np.array_equal(COSTS[choice], np.where(best, COSTS, np.inf).min(axis=1))  # ties go to the cheaper model
    assert np.array_equal(route_budget(g, COSTS, budget=COSTS.max(), available=None), choice)


@pytest.mark.parametrize("seed", range(5))
def test_budget_is_respected_and_spent_well(seed):
    g = grades(seed=seed)
    for budget in (0.2, 1.0, 5.0, 15.0, 40.0):
        choice = route_budget(g, COSTS, budget)
        assert mean_cost(choice, COSTS) <= budget + 1e-9
        # never worse than any single model that fits the budget
        for j in np.flatnonzero(COSTS <= budget):
            assert g[np.arange(len(g)), choice].mean() >= g[:, j].mean() - 1e-9


def test_budget_routing_is_close_to_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    costs = np.array([1.0, 3.0, 7.0])
    gaps = []
    for _ in range(40):
        q = rng.random((4, 3)) * 10
        budget = rng.uniform(1.0, 7.0)
        best = max(q[np.arange(4), c].mean() for c in itertools.product(range(3), repeat=4) if costs[list(c)].mean() <= budget)
        choice = route_budget(q, costs, budget)
        assert mean_cost(choice, costs) <= budget + 1e-9
        gaps.append(best - q[np.arange(4), choice].mean())
    # Lagrangian + greedy fill is not exact on tiny knapsacks, but it is optimal most of the time and close otherwise
    assert np.mean(np.array(gaps) < 1e-9) >= 0.85 and max(gaps) < 1.0


def test_unavailable_models_are_never_chosen_and_lambda_lowers_cost():
    g = grades(seed=4)
    available = np.random.default_rng(5).random(g.shape) > 0.3
    available[:, 0] = True
    costs_seen = []
    for lam in (0.0, 0.01, 0.1, 1.0, 10.0):
        choice = route_lambda(g, COSTS, lam, available)
        assert available[np.arange(len(g)), choice].all()
        costs_seen.append(mean_cost(choice, COSTS))
    assert costs_seen == sorted(costs_seen, reverse=True)
    assert available[np.arange(len(g)), route_budget(g, COSTS, 3.0, available)].all()


def test_budget_below_the_cheapest_routing_is_an_input_error():
    with pytest.raises(InputError, match="below the cheapest"):
        route_budget(grades(), COSTS, 0.1)


def write_graded(tmp_path, n_prompts=40, seed=0):
    """Prompts that ask for code are hard for the cheap model: a router that reads prompts can use that."""
    rng = np.random.default_rng(seed)
    models = ["cheap", "mid", "best"]
    rows, prompts = [], []
    for i in range(n_prompts):
        code = i % 2 == 0
        text = f"write a python function number {i}" if code else f"say hello to person {i}"
        prompts.append(
            {"id": i, "question_id": f"q{i}", "prompt": json.dumps([text]), "response_a": '["x"]', "response_b": '["y"]'}
        )
        base = {"cheap": 3 if code else 9, "mid": 6 if code else 9, "best": 9}
        rows += [{"question_id": f"q{i}", "model": m, "grade": min(10, base[m] + int(rng.integers(0, 2)))} for m in models]
    pd.DataFrame(rows).to_csv(tmp_path / "grades.csv", index=False)
    pd.DataFrame(prompts).to_csv(tmp_path / "pairs.csv", index=False)
    (tmp_path / "costs.toml").write_text("cheap = 1.0\nmid = 3.0\nbest = 10.0\n")
    return tmp_path


def test_route_command_end_to_end_on_a_tiny_graded_set(tmp_path, capsys):
    write_graded(tmp_path)
    pd.DataFrame({"id": ["n1", "n2"], "prompt": [json.dumps(["write python code please"]), json.dumps(["say hello"])]}).to_csv(
        tmp_path / "new.csv", index=False
    )
    sets = [
        f"router.costs_file={str(tmp_path / 'costs.toml')!r}",
        f"runs_dir={str(tmp_path)!r}",
        f"cv.fold_dir={str(tmp_path / 'folds')!r}",
    ]
    argv = ["route", "--train", str(tmp_path / "pairs.csv"), "--grades", str(tmp_path / "grades.csv")]
    argv += ["--test", str(tmp_path / "new.csv"), "--folds", "4"]
    assert cli_main(argv + [a for s in sets for a in ("--set", s)]) == 0
    out = tmp_path / "routing" / "sample"
    assert json.loads((out / "manifest.json").read_text())["kind"] == "routing"
    assert len(list((tmp_path / "folds").glob("folds-*-k4-s42.parquet"))) == 1  # the fold table, written once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["router_at_budget"]["mean_cost"] <= summary["budget_per_prompt"] + 1e-9
    assert summary["router_share_of_oracle_gain_at_budget"] > summary["means_only_share_of_oracle_gain_at_budget"]
    # sanity order at the budget: oracle >= router > random and the cheapest model
    grade = {k: summary[k]["mean_grade"] for k in ("oracle_at_budget", "router_at_budget", "random", "cheapest")}
    assert grade["oracle_at_budget"] >= grade["router_at_budget"] > max(grade["random"], grade["cheapest"])
    curve = pd.read_csv(out / "curve.csv")
    under_budget = curve[curve["policy"].isin(["router", "oracle"])]
    assert (under_budget["mean_cost"] <= under_budget["budget"] + 1e-9).all()
    oracle = curve[curve["policy"] == "oracle"].set_index("budget")["mean_grade"]
    router = curve[curve["policy"] == "router"].set_index("budget")["mean_grade"]
    assert (oracle >= router - 1e-9).all()
    for name in ("curve.csv", "curve.png", "decisions.csv", "routed.csv", "config.toml", "manifest.json"):
        assert (out / name).exists()
    routed = pd.read_csv(out / "routed.csv")
    assert routed["cost"].mean() <= summary["budget_per_prompt"] + 1e-9


def test_missing_cost_is_reported_in_one_line(tmp_path, capsys):
    write_graded(tmp_path)
    (tmp_path / "costs.toml").write_text("cheap = 1.0\n")
    argv = [
        "route",
        "--train",
        str(tmp_path / "pairs.csv"),
        "--set",
        f"data.grades={str(tmp_path / 'grades.csv')!r}",
        "--set",
        f"router.costs_file={str(tmp_path / 'costs.toml')!r}",
        "--out",
        str(tmp_path / "route"),
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "no cost for model" in err and "costs.toml" in err
    assert not (tmp_path / "route").exists()


def pairs_from_grades(tmp_path):
    """Every pair of models on every graded prompt, labelled by the higher grade (equal grades tie), as in arena-bench-pairs."""
    grades = pd.read_csv(tmp_path / "grades.csv")
    prompts = pd.read_csv(tmp_path / "pairs.csv").set_index("question_id")["prompt"]
    rows = []
    for qid, part in grades.groupby("question_id"):
        by_model = part.set_index("model")["grade"]
        for a, b in itertools.combinations(sorted(by_model.index), 2):
            label = [int(by_model[a] > by_model[b]), int(by_model[a] < by_model[b]), int(by_model[a] == by_model[b])]
            rows.append(
                {
                    "id": f"{qid}-{a}-{b}",
                    "model_a": a,
                    "model_b": b,
                    "prompt": prompts[qid],
                    "response_a": '["x"]',
                    "response_b": '["y"]',
                    "winner_model_a": label[0],
                    "winner_model_b": label[1],
                    "winner_tie": label[2],
                    "question_id": qid,
                }
            )
    pd.DataFrame(rows).to_csv(tmp_path / "labelled.csv", index=False)
    return tmp_path / "labelled.csv"


def test_without_grades_the_quality_is_each_models_win_share_on_the_prompt(tmp_path):
    from analysis.routing.evaluate import load_graded
    from analysis.routing.settings import RoutingConfig
    from stages.route import run_route as run

    write_graded(tmp_path)
    sets = [
        f"data.prompts={str(pairs_from_grades(tmp_path))!r}",
        f"router.costs_file={str(tmp_path / 'costs.toml')!r}",
        "cv.folds=4",
        "cv.fold_dir=''",
    ]
    cfg = load_config(RoutingConfig, None, sets)
    data = load_graded(cfg)
    assert data.quality == "win share" and data.models == ["best", "cheap", "mid"] and len(data.ids) == 40
    assert ((data.grades >= 0) & (data.grades <= 1)).all()
    graded = load_graded(replace(cfg, data=replace(cfg.data, grades=str(tmp_path / "grades.csv"))))
    g = graded.grades[np.argsort(graded.ids)]  # both keyed by question_id, models in the same order
    beaten = (g[:, :, None] > g[:, None, :]).sum(axis=2) + 0.5 * ((g[:, :, None] == g[:, None, :]).sum(axis=2) - 1)
    assert np.allclose(data.grades[np.argsort(data.ids)], beaten / 2)  # wins (ties half) over the 2 other models
    summary = run(cfg, write=False)["summary"]
    assert summary["quality"] == "win share"
    assert summary["router_share_of_oracle_gain_at_budget"] > summary["means_only_share_of_oracle_gain_at_budget"]


def test_unknown_candidate_model_is_reported_in_one_line(tmp_path, capsys):
    write_graded(tmp_path)
    argv = [
        "route",
        "--train",
        str(tmp_path / "pairs.csv"),
        "--models",
        "cheap",
        "gpt-9",
        "--set",
        f"data.grades={str(tmp_path / 'grades.csv')!r}",
        "--set",
        f"router.costs_file={str(tmp_path / 'costs.toml')!r}",
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown model 'gpt-9'" in err and len(err.strip().splitlines()) == 1


def test_quality_folds_come_from_the_fold_table(tmp_path):
    """Routing's fold loop reads the fold table: prompts never straddle folds, and the table equals the one
    `fold_table` makes for these prompts (the same split the old per-stage assign_folds made)."""
    from analysis.routing.evaluate import load_graded, prompt_folds
    from analysis.routing.settings import RoutingConfig
    from competition.folds import assign_folds, fold_table

    write_graded(tmp_path)
    sets = [f"data.grades={str(tmp_path / 'grades.csv')!r}", f"data.prompts={str(tmp_path / 'pairs.csv')!r}", "cv.fold_dir=''"]
    cfg = load_config(RoutingConfig, None, sets)
    data = load_graded(cfg)
    folds = prompt_folds(data, cfg)
    assert np.array_equal(folds, fold_table(data.ids, data.ids, None, 5, 42, None)["fold"].to_numpy())
    assert np.array_equal(folds, assign_folds(None, pd.Series(data.ids), 5, 42))


# -- P2L's per-query LP router


def best_mixture_by_enumeration(utility: np.ndarray, costs: np.ndarray, limit: float) -> float:
    """The LP's optimum found another way: the best single model within the limit, or the best mix of two models
    (one under, one over the limit) whose expected cost is exactly the limit."""
    best = max(u for u, c in zip(utility, costs, strict=True) if c <= limit + 1e-12)
    for i, j in itertools.permutations(range(len(costs)), 2):
        if costs[i] < limit < costs[j]:
            share_j = (limit - costs[i]) / (costs[j] - costs[i])
            best = max(best, (1 - share_j) * utility[i] + share_j * utility[j])
    return best


@pytest.mark.parametrize("seed", range(4))
def test_the_per_query_lp_reaches_the_best_two_model_mixture_within_each_prompts_limit(seed):
    rng = np.random.default_rng(seed)
    utility = rng.random((25, len(COSTS)))
    for limit in (0.2, 1.0, 2.0, 17.0, 45.0, 80.0):
        policy = route_per_query(utility, COSTS, limit)
        assert np.allclose(policy.sum(axis=1), 1.0) and (policy >= 0).all()
        assert (policy @ COSTS <= limit + 1e-7).all()
        expected = [best_mixture_by_enumeration(u, COSTS, limit) for u in utility]
        assert np.allclose((policy * utility).sum(axis=1), expected, atol=1e-7)
        assert ((policy > 1e-9).sum(axis=1) <= 2).all()  # one cost constraint: at most two models in the mix


def test_the_per_query_router_spends_nothing_on_a_model_that_is_no_better():
    utility = np.array([[0.7, 0.7, 0.7, 0.7, 0.7], [0.1, 0.9, 0.9, 0.9, 0.9], [0.3, 0.3, 0.3, 0.8, 0.8]])
    policy = route_per_query(utility, COSTS, 45.0)
    assert np.allclose(policy[0], [1, 0, 0, 0, 0]) and np.isclose(policy[1] @ COSTS, 2.0)
    assert np.allclose(policy[2], [0, 0, 0, 1, 0])  # the 60-unit model is no better than the 30-unit one


def test_the_per_query_router_never_picks_a_model_without_an_answer_and_falls_back_to_the_cheapest_answering_one():
    utility = np.array([[0.1, 0.2, 0.3, 0.9, 1.0], [0.5, 0.1, 0.1, 0.9, 0.9]])
    available = np.array([[False, True, True, True, False], [True, True, True, True, True]])
    policy = route_per_query(utility, COSTS, 1.0, available)
    assert policy[0, ~available[0]].max() == 0.0 and np.isclose(policy[0, 1] + policy[0, 2], 1.0)  # 2.0 > limit: cheapest
    assert np.isclose(policy[1] @ COSTS, 1.0) and policy[1, 0] > 0.95  # a sliver of the 0.9 model fits the limit


def test_draws_follow_the_policy():
    policy = np.tile([0.0, 0.25, 0.0, 0.75, 0.0], (40_000, 1))
    drawn = draw_from_policy(policy, np.random.default_rng(0))
    assert set(np.unique(drawn)) == {1, 3} and abs(np.mean(drawn == 3) - 0.75) < 0.01
