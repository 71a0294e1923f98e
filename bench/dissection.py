"""Dissection figures on a pairs file, as JSON: wall time of a whole `dissect` (all properties, all scenarios,
the given judges), and the Laplace posterior of the labels' judge against an MCMC sampler (emcee, optional:
requirements-bench.txt) on the same likelihood and prior; and the width of prompt-clustered (sandwich) intervals
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

from analysis.dissection.bayes import clustered_covariance, fit_posterior  # noqa: E402
from analysis.dissection.judges import label_targets  # noqa: E402
from analysis.dissection.properties import standardised  # noqa: E402
from analysis.dissection.settings import DissectConfig  # noqa: E402
from competition.config import load_config  # noqa: E402
from competition.folds import prompt_groups  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402


def sampled_posterior(x: np.ndarray, target: np.ndarray, prior_sd: float, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) of the same posterior drawn by emcee's affine-invariant ensemble sampler."""
    import emcee

    def log_posterior(betas: np.ndarray) -> np.ndarray:  # all walkers at once
        z = x @ betas.T
        return (target[:, None] * z - np.logaddexp(0.0, z)).sum(axis=0) - 0.5 * (betas**2).sum(axis=1) / prior_sd**2

    walkers = 4 * x.shape[1]
    start = fit_posterior(x, target, prior_sd=prior_sd).mean + 1e-3 * np.random.default_rng(seed).normal(
        size=(walkers, x.shape[1])
    )
    sampler = emcee.EnsembleSampler(walkers, x.shape[1], log_posterior, vectorize=True)
    sampler.run_mcmc(start, steps, progress=False)
    chain = sampler.get_chain(discard=steps // 2, flat=True)
    return chain.mean(axis=0), chain.std(axis=0)


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
    laplace = fit_posterior(x.to_numpy()[keep], target[keep], prior_sd=cfg.dissect.prior_sd)
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
    try:
        started = time.perf_counter()
        mean, sd = sampled_posterior(x.to_numpy()[keep], target[keep], cfg.dissect.prior_sd, args.mcmc_steps, seed=0)
        result["mcmc"] = {
            "sampler": "emcee (affine-invariant ensemble), second half of each walker's chain",
            "steps": args.mcmc_steps,
            "seconds": time.perf_counter() - started,
            "max_abs_mean_difference_in_laplace_sds": float(np.max(np.abs(mean - laplace.mean) / laplace.sd)),
            "sd_ratio_range_mcmc_over_laplace": [float(np.min(sd / laplace.sd)), float(np.max(sd / laplace.sd))],
        }
    except ImportError:
        result["mcmc"] = "emcee not installed (pip install -r requirements-bench.txt)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
