"""CLI of `route`: evaluate routing out of fold on graded prompts; with --test, also route new prompts."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from competition.cli import add_common_arguments
from competition.config import load_config
from competition.report import print_table


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_common_arguments(parser)
    parser.add_argument("--budget", type=float, help="mean cost per prompt (default: half the best single model's cost)")
    parser.add_argument("--lam", type=float, help="route by quality − lam·cost instead of a budget (for --test)")
    parser.add_argument("--models", help="comma-separated candidate models (default: every model in the data)")


def main(args: argparse.Namespace) -> int:
    from models.routing.evaluate import run
    from models.routing.settings import RoutingConfig

    sets = list(args.set)
    pairs = {
        "data.prompts": args.train,
        "data.test": args.test,
        "folds": args.folds,
        "seed": args.seed,
        "name": args.out,
        "router.budget": args.budget,
        "router.lam": args.lam,
    }
    sets += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in pairs.items() if v is not None]
    if args.models:
        sets.append(f"router.models={json.dumps([m.strip() for m in args.models.split(',') if m.strip()])}")
    cfg = load_config(RoutingConfig, args.config, sets)
    result = run(cfg)
    s = result["summary"]
    rows = [
        ("cheapest: " + s["cheapest_model"], s["cheapest"]),
        ("random", s["random"]),
        ("best single: " + s["best_single_model"], s["best_single"]),
        ("model means only, at budget", s["means_only_at_budget"]),
        ("router at budget", s["router_at_budget"]),
        ("oracle at budget", s["oracle_at_budget"]),
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
    print(
        f"router's share of the oracle's gain over the cheapest model at this budget: {share:.3f}"
        if share is not None
        else "oracle gains nothing here"
    )
    if result["routed"] is not None:
        print(result["routed"]["model"].value_counts().to_string())
    print(f"wrote {s['run_dir']}")
    return 0
