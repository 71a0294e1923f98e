"""Routing figures on arena-bench-pairs grades, printed as JSON.

For each prompt representation (registry prompt features; plus a MiniLM embedding) and ridge strength:
mean grade and cost of the router at a budget of half the best single model's cost, the same for the
oracle, the cheapest and best single models, random choice and a router that knows only model means,
and the router's share of the oracle's gain over the cheapest model. The costs are the illustrative
table in configs/routing/costs.toml.
    python bench/routing.py [--no-embed]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.routing.evaluate import evaluate_routing, load_graded  # noqa: E402
from analysis.routing.quality import prompt_features  # noqa: E402
from analysis.routing.settings import QualityConfig, RoutingConfig  # noqa: E402
from competition.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/routing/bench.toml")
    parser.add_argument("--no-embed", action="store_true", help="skip the MiniLM variants (about a minute on 2 cores)")
    args = parser.parse_args()
    cfg = load_config(RoutingConfig, args.config)
    data = load_graded(cfg)
    out: dict = {"prompts": len(data.ids), "models": data.models, "runs": []}
    variants = [(False, 10.0), (False, 100.0), (False, 1000.0)] + ([] if args.no_embed else [(True, 100.0), (True, 1000.0)])
    features = {}
    for embed, alpha in variants:
        if embed not in features:
            start = time.perf_counter()
            features[embed] = prompt_features(data.prompts, embed)
            out[f"feature_seconds_embed_{embed}"] = round(time.perf_counter() - start, 1)
        for share in (0.25, 0.5):
            run_cfg = replace(
                cfg, quality=QualityConfig(embed=embed, alpha=alpha), router=replace(cfg.router, budget_share_of_best=share)
            )
            _, summary, _ = evaluate_routing(data, features[embed], run_cfg)
            keep = (
                "budget_per_prompt",
                "router_at_budget",
                "oracle_at_budget",
                "means_only_at_budget",
                "router_share_of_oracle_gain_at_budget",
                "means_only_share_of_oracle_gain_at_budget",
                "router_share_of_unconstrained_oracle_gain",
                "quality_rmse_oof",
                "quality_rmse_model_mean",
            )
            out["runs"].append({"embed": embed, "alpha": alpha, "budget_share_of_best": share, **{k: summary[k] for k in keep}})
            out.setdefault(
                "baselines",
                {
                    k: summary[k]
                    for k in ("best_single_model", "best_single", "cheapest_model", "cheapest", "random", "oracle_unconstrained")
                },
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
