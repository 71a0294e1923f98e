"""cv, fit, predict and run: the spine's commands over competition.pipeline."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pandas as pd

from competition import pipeline
from competition.cli import add_common_arguments
from competition.commands.common import config_from_args
from competition.report import console, print_mapping, print_table
from competition.settings import SpineConfig
from competition.submission import write_submission

FLAG_FIELDS = {"train": "data.train", "test": "data.test", "folds": "cv.folds", "seed": "cv.seed", "max_rows": "data.max_rows"}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_common_arguments(parser)
    parser.add_argument("--name", help="run name: outputs go to <runs_dir>/<name>")
    if command == "predict":
        parser.add_argument("--model", required=True, help="run directory (or its model/ folder) written by `fit`")


def spine_config(args: argparse.Namespace) -> SpineConfig:
    flags = dict(FLAG_FIELDS, name="name")
    if args.command in ("cv", "fit", "run") and args.out:
        out = Path(args.out)
        args.set = [f"runs_dir={str(out.parent)!r}", f"name={out.name!r}", *args.set]
    return config_from_args(SpineConfig, args, flags)


def report_cv(result: pipeline.CVResult, cfg: SpineConfig) -> None:
    print_table(f"{cfg.name}: grouped {cfg.cv.folds}-fold CV ({len(result.y)} rows)", result.fold_scores)
    s = result.summary
    print_mapping(
        "out-of-fold",
        {
            "log loss (pooled)": s["log_loss"],
            "log loss (fold mean ± std)": f"{s['fold_mean']:.4f} ± {s['fold_std']:.4f}",
            "accuracy": s["accuracy"],
            "prior log loss": s["prior_log_loss"],
            "skill (1 - loss/prior)": s["skill"],
            "seconds": result.seconds,
            "outputs": str(cfg.run_dir),
        },
    )


def submission_path(cfg: SpineConfig, out: str | None) -> Path:
    return Path(out) if out else Path(cfg.submissions_dir) / f"{cfg.name}.csv"


def main(args: argparse.Namespace) -> int:
    cfg = spine_config(args)
    if args.command == "cv":
        report_cv(pipeline.run_cv(cfg), cfg)
    elif args.command == "fit":
        model_dir = pipeline.fit(cfg)
        console.print(f"model saved to {model_dir}")
    elif args.command == "predict":
        test_path = cfg.data.test
        ids, probs = pipeline.predict(cfg, args.model, test_path)
        path = write_submission(submission_path(cfg, args.out), ids, probs)
        print_mapping("submission", {"file": str(path), "rows": len(ids), **_mean_probs(probs)})
    elif args.command == "run":
        return run_main_job(cfg, args.out)
    return 0


def _mean_probs(probs) -> dict[str, float]:
    return {f"mean {name}": float(v) for name, v in zip(("p(a)", "p(b)", "p(tie)"), probs.mean(axis=0), strict=True)}


def run_main_job(cfg: SpineConfig, out: str | None = None) -> int:
    """The main job: cv on the training file, fit on all of it, predict the test file, one summary."""
    result = pipeline.run_cv(cfg)
    report_cv(result, cfg)
    model_dir = pipeline.fit(cfg)
    ids, probs = pipeline.predict(replace(cfg), model_dir, cfg.data.test)
    path = write_submission(Path(cfg.submissions_dir) / f"{cfg.name}.csv", ids, probs)
    top = result.importance.head(8) if result.importance is not None else pd.Series(dtype=float)
    print_table("top features (mean gain over folds)", pd.DataFrame({"feature": top.index, "gain": top.to_numpy()}), 1)
    print_mapping(
        "run",
        {
            "out-of-fold log loss": result.summary["log_loss"],
            "skill": result.summary["skill"],
            "model": str(model_dir),
            "submission": str(path),
            "submission rows": len(ids),
            **_mean_probs(probs),
        },
    )
    return 0
