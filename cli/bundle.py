"""`python -m competition bundle`: an offline Kaggle bundle of chosen runs (stages/bundle.py)."""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, NAME, OUT, SET, Flag, config_from_args
from cli.report import print_mapping

FLAGS = {
    "bundle": (
        CONFIG,
        Flag("--blend", "blend", "a blend run: its runs come with it"),
        Flag("--runs", "runs", "one run alone (without --blend), or a blend's runs where they lie now", nargs="+"),
        OUT,
        NAME,
        Flag(
            "--base-model",
            "base_models",
            "folder of a fold model's base, checked now (never copied; repeatable)",
            action="append",
        ),
        Flag("--wheels-dir", "wheels_dir", "folder of *.whl the Kaggle image lacks (made by pip download)"),
        Flag("--devices", "scoring.devices", "the entry point's default devices (Kaggle: gpu:2)"),
        Flag("--time-budget", "time_budget_s", "the entry point's default time budget in seconds", type=float),
        SET,
    )
}


def main(args: argparse.Namespace) -> int:
    from stages.bundle import BundleConfig, run

    cfg = config_from_args(BundleConfig, args, FLAGS["bundle"])
    done = run(cfg)
    print_mapping(
        "bundle",
        {"folder": done["bundle"], "runs": ", ".join(done["runs"]), "wheels": len(done["wheels"]), "MiB": done["bytes"] / 2**20},
    )
    return 0
