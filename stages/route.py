"""The `route` stage: out-of-fold quality predictions on graded prompts, routing against baselines, a quality-vs-cost curve.

Folds are over prompts (each prompt is its own group), taken from the fold table, so every prediction
comes from a model that never saw that prompt. Baselines: every single model, the best single model
(by training-fold mean), uniform random choice, the cheapest model, and the per-prompt oracle (true grades).

The quality model predicts a (prompts × models) grade matrix, not three-way preference probabilities, so
it does not fit the cross-fit loop (which scores (n, 3) probabilities against class labels): its one fold
loop is `out_of_fold_quality`, over the same kind of fold table every stage reads.
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
from analysis.routing.router import route_budget, route_lambda
from analysis.routing.settings import RoutingConfig
from competition.config import save_config
from competition.rundir import check_outputs, staged_unit
from data.tables import read_prompts

RUN_KIND = "routing"


def p2l_routes(data: GradedPrompts, test: pd.DataFrame, cfg: RoutingConfig) -> np.ndarray:
    """P2L's choice for each prompt of `test`: the run's fold models' win rates, under the ridge router's budget rule."""
    from analysis.p2l import new_prompt_win_rates

    costs = cost_vector(data.models, load_costs(cfg), cfg.router.costs_file)
    quality = new_prompt_win_rates(cfg.p2l, test["prompt"].tolist(), data.models)
    if cfg.router.lam is not None:
        return np.array(data.models)[route_lambda(quality, costs, cfg.router.lam)]
    best = int(np.argmax(np.nanmean(data.grades, axis=0)))
    budget = cfg.router.budget if cfg.router.budget is not None else cfg.router.budget_share_of_best * costs[best]
    return np.array(data.models)[route_budget(quality, costs, budget)]


def run(cfg: RoutingConfig, write: bool = True) -> dict:
    """Out-of-fold routing figures (and routed test prompts); with `write`, the run directory as one unit."""
    if write:
        check_outputs(cfg.side_outputs(), cfg.inputs(), cfg.run_dir, RUN_KIND)
    table = load_costs(cfg)  # every input is read and checked before any fitting
    data = load_graded(cfg)
    cost_vector(data.models, table, cfg.router.costs_file)
    test = read_prompts(cfg.data.test) if cfg.data.test else None
    X = prompt_features(data.prompts, cfg.quality.embed)
    other_routers = {}
    if cfg.p2l:
        from analysis.p2l import out_of_fold_win_rates

        other_routers["p2l_router"] = out_of_fold_win_rates(cfg.p2l, data.ids, data.models)
    curve, summary, decisions = evaluate_routing(data, X, cfg, other_routers)
    routed = route_new_prompts(data, X, test, cfg) if test is not None else None
    if routed is not None and cfg.p2l:
        routed["p2l_model"] = p2l_routes(data, test, cfg)
    if write:
        with staged_unit(cfg.run_dir, RUN_KIND, {"prompts": len(data.ids)}) as staging:
            save_config(cfg, staging / "config.toml")
            curve.to_csv(staging / "curve.csv", index=False)
            decisions.to_csv(staging / "decisions.csv", index=False)
            (staging / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
            plot_curve(curve, summary, staging / "curve.png")
            if routed is not None:
                routed.to_csv(staging / "routed.csv", index=False)
        summary["run_dir"] = str(cfg.run_dir)
    return {"summary": summary, "curve": curve, "decisions": decisions, "routed": routed}
