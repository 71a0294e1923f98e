"""features: build a file's feature table in blocks of whole prompts, as parquet parts, in this process or as
tasks on a Ray cluster (features/parts.py); `cv --features-table RUN` and `fit --features-table RUN` read it.

Run directory: parts/ (part-<k>.parquet and parts.json, written part by part: a killed build resumes) and, once
every part is there, summary.json, config.toml and manifest.json (a unit).
"""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, MAX_ROWS, NAME, OUT, SET, TRAIN, Flag, config_from_args
from cli.report import console, print_mapping
from stages.features import FeaturesConfig, run_features

ENGINE = Flag("--engine", "build.engine", "build blocks here, or as tasks on a Ray cluster", choices=("local", "ray"))


RAY_ADDRESS = Flag("--ray-address", "build.ray_address", "ray engine: '' starts a local instance, auto, or HOST:PORT")


ROWS_PER_BLOCK = Flag("--rows-per-block", "build.rows_per_block", "rows per part (whole prompts, so about)", type=int)


FLAGS = {"features": (CONFIG, TRAIN, OUT, NAME, MAX_ROWS, ENGINE, RAY_ADDRESS, ROWS_PER_BLOCK, SET)}


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(FeaturesConfig, args, FLAGS["features"])
    summary = run_features(cfg)
    print_mapping(f"{cfg.run_dir}: feature table", {k: v for k, v in summary.items() if isinstance(v, int | float)})
    console.print(f"wrote {cfg.run_dir}")
    return 0
