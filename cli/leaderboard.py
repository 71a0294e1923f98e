"""leaderboard (Bradley-Terry from battles) and prompt-leaderboard (one prompt, predicted): commands over
models/leaderboard/."""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, FOLDS, MAX_ROWS, NAME, OUT, SEED, SET, TEST, TRAIN, Flag, config_from_args
from cli.report import console, print_mapping, print_table
from competition.errors import InputError
from models.bradley_terry import TIE_MODELS

BATTLES = Flag("--train", "data.battles", "battles CSV: model_a, model_b and winner (or the Kaggle label columns)")
TIE_MODEL = Flag("--tie-model", "fit.tie_model", "how ties enter the likelihood", choices=TIE_MODELS)
BOOTSTRAP = Flag("--bootstrap", "intervals.bootstrap_rounds", "bootstrap rounds (0: sandwich intervals only)", type=int)
RATING_SEED = Flag("--seed", "seed", "random seed of the held-out split and the bootstrap", type=int)
PROMPT_ID = Flag("--prompt-id", "prompt_id", "question_id of the prompt in --train (without that column: the prompt hash)")
PROMPT = Flag("--prompt", "prompt", "prompt text; it must occur in --train (its answers are needed)")
ROW = Flag("--row", "row", "row (from 1) of --test whose prompt to rank models for", type=int)
MODELS = Flag("--models", "models", "models to rank (default: every model that answered)", nargs="+")
GRADES = Flag("--grades", "data.grades", "CSV of question_id, model, grade to compare the ranking with")
EVALUATE = Flag("--evaluate", "evaluate", "also measure the model-aware predictor out of fold", action="store_true")
P2L = Flag("--p2l", "p2l.run", "rank with a train-p2l run's fold models instead (the prompt need not be in --train)")
P2L_PROMPTS = Flag("--prompts", "p2l.prompts", "with --p2l: CSV with a prompt column; one aggregate leaderboard over them")
FLAGS = {
    "leaderboard": (CONFIG, BATTLES, OUT, NAME, TIE_MODEL, BOOTSTRAP, RATING_SEED, MAX_ROWS, SET),
    "prompt-leaderboard": (
        CONFIG,
        TRAIN,
        TEST,
        GRADES,
        OUT,
        NAME,
        PROMPT_ID,
        PROMPT,
        ROW,
        MODELS,
        EVALUATE,
        P2L,
        P2L_PROMPTS,
        FOLDS,
        SEED,
        MAX_ROWS,
        SET,
    ),
}


def run_leaderboard(args: argparse.Namespace) -> int:
    from analysis.leaderboard.settings import LeaderboardConfig
    from stages.leaderboard import run_leaderboard

    cfg = config_from_args(LeaderboardConfig, args, FLAGS["leaderboard"])
    result = run_leaderboard(cfg)
    first = cfg.intervals.active[0] if cfg.intervals.active else None
    columns = (
        ["rank_ub", "model", "rating", f"{first}_lower", f"{first}_upper", "battles"] if first else ["model", "rating", "battles"]
    )
    shown = result.table[columns].head(25).round(1)
    print_table(f"Bradley-Terry leaderboard ({cfg.fit.tie_model} ties), top {len(shown)} of {len(result.table)}", shown, digits=1)
    if result.holdout:
        print_mapping(f"held-out battles ({cfg.holdout.split} split, {cfg.holdout.share:.0%})", result.holdout)
    console.print(f"wrote {result.run_dir}")
    return 0


def run_prompt(args: argparse.Namespace) -> int:
    from analysis.leaderboard.settings import PromptLeaderboardConfig
    from stages.prompt_leaderboard import run_prompt_leaderboard

    cfg = config_from_args(PromptLeaderboardConfig, args, FLAGS["prompt-leaderboard"])
    if cfg.p2l.prompts and not cfg.p2l.run:
        raise InputError("--prompts needs --p2l: an aggregate leaderboard over a file of prompts comes from a P2L run")
    if getattr(args, FOLDS.dest, None) is not None and not cfg.evaluate and not cfg.p2l.run:
        raise InputError("--folds is read only with --evaluate (the out-of-fold measure): add --evaluate or leave it out")
    if cfg.p2l.run:
        from stages.prompt_leaderboard import run_p2l_leaderboard

        result = run_p2l_leaderboard(cfg)
        print_table(f"P2L leaderboard ({result.prompt_key}), {cfg.p2l.level:.0%} jackknife intervals", result.table, digits=3)
        console.print(f"wrote {result.run_dir}")
        return 0
    result = run_prompt_leaderboard(cfg)
    print_table(f"predicted leaderboard for prompt {result.prompt_key}", result.table, digits=3)
    if result.evaluation:
        print_mapping("model-aware predictor, out of fold (grouped by prompt)", flatten(result.evaluation))
    console.print(f"wrote {result.run_dir}")
    return 0


def flatten(values: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key} / ")
        else:
            out[f"{prefix}{key}"] = value
    return out


def main(args: argparse.Namespace) -> int:
    return run_leaderboard(args) if args.command == "leaderboard" else run_prompt(args)
