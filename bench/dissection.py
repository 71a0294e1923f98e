"""Dissection figures on a pairs file, as JSON: wall time of a whole `dissect` (all properties, all scenarios,
the given judges), and the Laplace posterior of the labels' judge against an MCMC sampler (emcee) on the same
likelihood and prior; GAIR's Laplace(0, 0.1) prior (sampled) beside it; and the width of prompt-clustered (sandwich) intervals
over the independent Laplace ones, per property (pairs sharing a prompt share its answers).

    python bench/dissection.py --train ../shared/data/arena-bench-pairs/train.csv --judges runs/m13/lgbm runs/m13/reward
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from analysis.dissection.bayes import Prior, clustered_covariance, fit_posterior, sample_posterior  # noqa: E402
from analysis.dissection.judges import label_targets  # noqa: E402
from analysis.dissection.properties import standardised  # noqa: E402
from analysis.dissection.settings import DissectConfig  # noqa: E402
from competition.config import load_config  # noqa: E402
from competition.folds import prompt_groups  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402


def compared_with_laplace(sampled, laplace, seconds: float, steps: int) -> dict:
    """How far emcee's draws under the normal prior are from its Laplace approximation."""
    return {
        "sampler": "emcee (affine-invariant ensemble), second half of each walker's chain",
        "steps": steps,
        "seconds": seconds,
        "longest_autocorrelation_steps": sampled.autocorrelation_steps,
        "max_abs_mean_difference_in_laplace_sds": float(np.max(np.abs(sampled.mean - laplace.mean) / laplace.sd)),
        "sd_ratio_range_mcmc_over_laplace": [float(np.min(sampled.sd / laplace.sd)), float(np.max(sampled.sd / laplace.sd))],
    }


def gair_prior_line(gair, laplace, seconds: float) -> dict:
    """GAIR's Laplace(0, 0.1) prior (sampled) beside the default normal one, effect by effect."""
    normal_table, gair_table = laplace.table().set_index("property"), gair.table().set_index("property")
    return {
        "prior": Prior("laplace", 0.1).describe(),
        "seconds": seconds,
        "longest_autocorrelation_steps": gair.autocorrelation_steps,
        "max_abs_effect_difference_in_normal_sds": float(np.max(np.abs(gair.mean - laplace.mean) / laplace.sd)),
        "credible_under_one_prior_only": sorted(normal_table.index[normal_table["credible"] != gair_table["credible"]]),
        "odds_ratio_normal_vs_gair": {
            name: [round(float(normal_table.loc[name, "odds_ratio"]), 3), round(float(gair_table.loc[name, "odds_ratio"]), 3)]
            for name in normal_table.index
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--judges", nargs="*", default=[])
    parser.add_argument("--mcmc-steps", type=int, default=3000)
    args = parser.parse_args()

    from stages.dissect import property_differences, run_dissection

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"data": {"train": args.train}, "out": str(Path(tmp) / "d"), "dissect": {"judges": args.judges}}
        cfg = load_config(DissectConfig, None, [overrides])
        start = time.perf_counter()
        out = run_dissection(cfg)
        wall = time.perf_counter() - start
    frame = load_arena_csv(args.train, require_labels=True)
    x, _ = standardised(property_differences(frame, cfg.dissect))
    target, weight = label_targets(frame["label"].to_numpy(), "drop")
    keep = weight > 0
    laplace = fit_posterior(x.to_numpy()[keep], target[keep], prior_sd=cfg.dissect.prior_sd, names=list(x.columns))
    groups = prompt_groups(frame).astype(str).to_numpy()[keep]
    clustered = clustered_covariance(x.to_numpy()[keep], target[keep], laplace, groups, prior_sd=cfg.dissect.prior_sd)
    ratio = np.sqrt(np.diag(clustered)) / laplace.sd
    result = {
        "pairs": len(frame),
        "clustered_over_independent_width": {
            "prompts": int(len(np.unique(groups))),
            "median": float(np.median(ratio)),
            "range": [float(ratio.min()), float(ratio.max())],
            "per_property": dict(zip(x.columns, np.round(ratio, 3).tolist(), strict=True)),
        },
        "judges": out["summary"]["judges"],
        "dissect_wall_seconds": wall,
        "dissect_inner_seconds": out["summary"]["seconds"],
        "scenario_pairs": out["summary"]["scenario_pairs"],
    }
    rows, labels = x.to_numpy()[keep], target[keep]
    try:
        started = time.perf_counter()
        sampled = sample_posterior(rows, labels, prior=Prior("normal", cfg.dissect.prior_sd), steps=args.mcmc_steps)
        result["mcmc"] = compared_with_laplace(sampled, laplace, time.perf_counter() - started, args.mcmc_steps)
        started = time.perf_counter()
        gair = sample_posterior(rows, labels, prior=Prior("laplace", 0.1), steps=args.mcmc_steps, names=list(x.columns))
        result["gair_prior"] = gair_prior_line(gair, laplace, time.perf_counter() - started)
    except ImportError:
        result["mcmc"] = "emcee not installed (pip install -r requirements.txt)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
