"""dissect: which properties of an answer move a judge, with 95% credible intervals, per scenario and per judge;
with --row and --model, the SHAP waterfall of one pair (models/dissection/).

Run directory (a unit): effects.csv/.png (every judge × property), scenarios.csv/.png (labels judge: odds ratio
per property × scenario; a scenario with too few pairs is reported, not fitted), judges.csv/.png (correlation
of the judges' effect vectors), shap_<id>.csv/.png (with --row), summary.json, config.toml, manifest.json.
"""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, NAME, OUT, SET, TRAIN, Flag, config_from_args
from cli.report import console, print_table
from stages.dissect import run_dissection

PROPERTY_TABLE = Flag("--properties-table", "dissect.property_table", "CSV of id + one column per property (A − B values)")


PROPERTIES = Flag("--properties", "dissect.properties", "property names to use (default: all measured ones)", nargs="+")


TIES = Flag("--ties", "dissect.ties", "ties: drop them, or count each as half a win for both sides", choices=("drop", "half"))


JUDGES = Flag(
    "--judges", "dissect.judges", "run directories (their out-of-fold predictions) or label CSVs of other judges", nargs="+"
)


ROW = Flag("--row", "dissect.row", "a pair id: SHAP waterfall of --model for that pair")


MODEL = Flag("--model", "dissect.model", "a LightGBM run (or its model/ folder) for --row")


SCENARIO = Flag(
    "--scenario",
    "dissect.scenario",
    "dissect only this scenario's pairs",
    choices=("code", "math", "writing", "reasoning", "other"),
)


PRIOR = Flag(
    "--prior",
    "dissect.prior",
    "prior on each effect: normal N(0, prior_sd²) (Laplace approximation) or GAIR's laplace (sampled)",
    choices=("normal", "laplace"),
)


MIN_PAIRS = Flag("--min-pairs", "dissect.min_pairs", "fewest decided pairs a scenario is fitted on", type=int)


FLAGS = {
    "dissect": (CONFIG, TRAIN, OUT, NAME, PROPERTIES, PROPERTY_TABLE, TIES, JUDGES, SCENARIO, MIN_PAIRS, PRIOR, ROW, MODEL, SET)
}


def main(args: argparse.Namespace) -> int:
    from analysis.dissection.settings import DissectConfig

    cfg = config_from_args(DissectConfig, args, FLAGS["dissect"])
    out = run_dissection(cfg)
    summary = out["summary"]
    console.print(f"prior: {summary['prior']}")
    left_out = [
        (f"{name} leaves out {row['leaves_out']:,} ({row['why']})" if row["leaves_out"] else f"{name} keeps all")
        + (f", and drops {row['dropped_for_others']:,} for others" if row["dropped_for_others"] else "")
        for name, row in summary["rows"]["per_judge"].items()
    ]
    console.print(
        f"every judge fitted on the same {summary['fitted_pairs']:,.0f} of {summary['pairs']:,} pairs: " + "; ".join(left_out)
    )
    table = out["labels"][["property", "odds_ratio", "odds_ratio_low", "odds_ratio_high", "credible"]]
    print_table("labels' judge: odds of winning × per typical A − B difference (95% credible interval)", table, digits=3)
    too_small = summary["scenarios_too_small"]
    if too_small:
        console.print(
            "scenarios with too few decided pairs (not fitted): " + ", ".join(f"{k} ({v:g})" for k, v in too_small.items())
        )
    console.print(f"wrote {cfg.run_dir} in {summary['seconds']:.1f} s")
    return 0
