"""`route`: out-of-fold routing figures on graded prompts against baselines, a quality-vs-cost curve, and with a
test file the route of each new prompt (analysis/routing/); with a P2L run, P2L's router beside the ridge one.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.routing.evaluate import (
    GradedPrompts,
    cost_vector,
    evaluate_routing,
    load_costs,
    load_graded,
    route_new_prompts,
)
from analysis.routing.plots import plot_curve
from analysis.routing.quality import prompt_features
from analysis.routing.router import draw_from_policy, route_budget, route_lambda, route_per_query
from analysis.routing.settings import RoutingConfig
from competition.errors import InputError
from competition.rundir import check_run, run_unit
from data.tables import read_prompts


def p2l_routes(data: GradedPrompts, test: pd.DataFrame, cfg: RoutingConfig) -> pd.DataFrame:
    """P2L's choices for each prompt of `test` from the run's fold models' win rates: under the ridge router's rule
    (`p2l_model`) and, with a budget, P2L's own router: a model drawn (seeded) from the per-query LP's policy with
    the budget as each prompt's cost limit (`p2l_lp_model`, and the probability it had)."""
    from analysis.p2l import field_win_rates, new_prompt_coefficients

    costs, names = cost_vector(data.models, load_costs(cfg), cfg.router.costs_file), np.array(data.models)
    coefficients = new_prompt_coefficients(cfg.p2l, test["prompt"].tolist(), data.models)
    quality = field_win_rates(*coefficients)
    if cfg.router.lam is not None:
        return pd.DataFrame({"p2l_model": names[route_lambda(quality, costs, cfg.router.lam)]})
    best = int(np.argmax(np.nanmean(data.grades, axis=0)))
    budget = cfg.router.budget if cfg.router.budget is not None else cfg.router.budget_share_of_best * costs[best]
    utility = field_win_rates(*coefficients, opponent_weights(cfg, data.models))
    policy = route_per_query(utility, costs, budget)
    drawn = draw_from_policy(policy, np.random.default_rng(cfg.cv.seed))
    return pd.DataFrame(
        {
            "p2l_model": names[route_budget(quality, costs, budget)],
            "p2l_lp_model": names[drawn],
            "p2l_lp_probability": policy[np.arange(len(drawn)), drawn],
        }
    )


def opponent_weights(cfg: RoutingConfig, models: list[str]) -> np.ndarray | None:
    """The LP router's opponent weights over the candidates (router.opponent), None for uniform."""
    if not cfg.router.opponent:
        return None
    unknown = [m for m in cfg.router.opponent if m not in models]
    if unknown:
        raise InputError(f"router.opponent: model {unknown[0]!r} is not a candidate (known: {', '.join(models)})")
    weights = np.array([cfg.router.opponent.get(m, 0.0) for m in models], dtype=np.float64)
    if weights.sum() <= 0:
        raise InputError("router.opponent: the candidates' weights are all zero")
    return weights


def run_route(cfg: RoutingConfig, write: bool = True) -> dict:
    """Out-of-fold routing figures (and routed test prompts); with `write`, the run directory as one unit."""
    if write:
        check_run(cfg)
    table = load_costs(cfg)  # every input is read and checked before any fitting
    data = load_graded(cfg)
    cost_vector(data.models, table, cfg.router.costs_file)
    test = read_prompts(cfg.data.test) if cfg.data.test else None
    X = prompt_features(data.prompts, cfg.quality.embed)
    opponent = opponent_weights(cfg, data.models)
    other_routers, per_query_routers = {}, {}
    if cfg.p2l:
        from analysis.p2l import field_win_rates, held_out_coefficients

        coefficients = held_out_coefficients(cfg.p2l, data.ids, data.models)
        other_routers["p2l_router"] = field_win_rates(*coefficients)
        per_query_routers["p2l_lp_router"] = field_win_rates(*coefficients, opponent)
    curve, summary, decisions = evaluate_routing(data, X, cfg, other_routers, per_query_routers)
    routed = route_new_prompts(data, X, test, cfg) if test is not None else None
    if routed is not None and cfg.p2l:
        routed = pd.concat([routed, p2l_routes(data, test, cfg).set_axis(routed.index)], axis=1)
    if write:
        with run_unit(cfg, {"prompts": len(data.ids)}) as staging:
            curve.to_csv(staging / "curve.csv", index=False)
            decisions.to_csv(staging / "decisions.csv", index=False)
            (staging / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
            plot_curve(curve, summary, staging / "curve.png")
            if routed is not None:
                routed.to_csv(staging / "routed.csv", index=False)
        summary["run_dir"] = str(cfg.run_dir)
    return {"summary": summary, "curve": curve, "decisions": decisions, "routed": routed}
