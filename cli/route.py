"""route: evaluate routing out of fold on graded prompts; with --test, also route new prompts (models/routing/)."""

from __future__ import annotations

import argparse

import pandas as pd

from cli.flags import CONFIG, FOLDS, NAME, OUT, SEED, SET, TEST, Flag, config_from_args
from cli.report import console, print_table

PROMPTS = Flag("--train", "data.prompts", "pairs CSV: prompt texts (and, without --grades, models and labels)")
GRADES = Flag("--grades", "data.grades", "CSV of question_id, model, grade (default: per-prompt win shares from --train)")
BUDGET = Flag("--budget", "router.budget", "mean cost per prompt (default: half the best single model's cost)", type=float)
LAM = Flag("--lam", "router.lam", "route --test prompts by quality − lam·cost instead of a budget", type=float)
MODELS = Flag("--models", "router.models", "candidate models (default: every model in the data)", nargs="+")
COSTS = Flag("--costs", "router.costs_file", "TOML table: model = cost per request")
P2L = Flag(
    "--p2l", "p2l", "a train-p2l run: also route by P2L's held-out win rates, under the batch budget and by P2L's per-query LP"
)
FLAGS = {"route": (CONFIG, PROMPTS, GRADES, TEST, OUT, NAME, BUDGET, LAM, MODELS, COSTS, P2L, FOLDS, SEED, SET)}


def main(args: argparse.Namespace) -> int:
    from analysis.routing.settings import RoutingConfig
    from stages.route import run_route

    cfg = config_from_args(RoutingConfig, args, FLAGS["route"])
    result = run_route(cfg)
    s = result["summary"]
    rows = [
        ("cheapest: " + s["cheapest_model"], s["cheapest"]),
        ("random", s["random"]),
        ("best single: " + s["best_single_model"], s["best_single"]),
        ("model means only, at budget", s["means_only_at_budget"]),
        ("router at budget", s["router_at_budget"]),
        *([("P2L router at budget", s["p2l_router_at_budget"])] if "p2l_router_at_budget" in s else []),
        *(
            [("P2L LP router, per-query limit (expected)", s["p2l_lp_router_at_budget"])]
            if "p2l_lp_router_at_budget" in s
            else []
        ),
        ("oracle at budget", s["oracle_at_budget"]),
        *([("oracle, per-query limit", s["oracle_per_query_at_budget"])] if "oracle_per_query_at_budget" in s else []),
        ("oracle, no budget", s["oracle_unconstrained"]),
    ]
    table = pd.DataFrame(
        {
            "policy": [r[0] for r in rows],
            f"mean_{s['quality'].replace(' ', '_')}": [r[1]["mean_grade"] for r in rows],
            "mean_cost": [r[1]["mean_cost"] for r in rows],
        }
    )
    print_table(f"routing, out of fold, budget {s['budget_per_prompt']:g} per prompt", table, digits=3)
    share = s["router_share_of_oracle_gain_at_budget"]
    console.print(
        f"router's share of the oracle's gain over the cheapest model at this budget: {share:.3f}"
        if share is not None
        else "oracle gains nothing here"
    )
    if "p2l_router_share_of_oracle_gain_at_budget" in s:
        console.print(f"P2L router's share of that gain: {s['p2l_router_share_of_oracle_gain_at_budget']:.3f}")
    if s.get("p2l_lp_router_share_of_oracle_gain_at_budget") is not None:
        console.print(
            f"P2L LP router (randomized, per-query cost limit): {s['p2l_lp_router_share_of_oracle_gain_at_budget']:.3f} of that"
            f" gain, {s['p2l_lp_router_share_of_per_query_oracle_gain_at_budget']:.3f} of the per-query oracle's"
        )
    if result["routed"] is not None:
        console.print(result["routed"]["model"].value_counts().to_string())
    console.print(f"wrote {s['run_dir']}")
    return 0
