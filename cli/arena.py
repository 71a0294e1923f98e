"""arena: rank models from automatic pairwise judgments (De-Arena), the flags; the runner is stages/arena.py."""

from __future__ import annotations

import argparse

from cli.flags import CONFIG, NAME, OUT, SET, TRAIN, Flag, config_from_args
from cli.report import console, print_table
from stages.arena import run_arena

JUDGE_RUN = Flag("--judge-run", "judge.run", "a cv / train-transformer run whose out-of-fold predictions judge")


JUDGE_MODEL = Flag("--judge-model", "judge.model", "a fitted model (any family) that judges the pairs")


VERDICTS = Flag("--verdicts", "judge.verdicts", "CSV of recorded verdicts (prompt, model_a, model_b, winner columns)")


GRADES = Flag("--grades", "judge.grades", "CSV of prompt (or question_id), model, grade: the graded oracle")


NOISE = Flag("--noise", "judge.noise", "normal noise sd on each grade (oracle)", type=float)


LLM = Flag("--llm", "judge.llm", "a local causal LM directory prompted as a pairwise judge")


VOTES = Flag("--votes", "judge.votes", "battles CSV (model_a, model_b, winner): recorded votes replayed as the judge")


CROWD = Flag("--crowd", "judge.crowd", "judges speaking for models: MODEL=VERDICTS.csv or MODEL=LM_DIR", nargs="+")


PER_JUDGE = Flag(
    "--per-judge-search", "arena.per_judge_search", "each judge runs its own binary search (ranks averaged)", action="store_true"
)


BUDGET = Flag("--budget", "arena.budget", "verdicts in all: adaptive comparisons after the insertion pass", type=int)


STYLE = Flag("--style", "arena.style_features", "style control in the final fit (feature columns)", nargs="+")


SEED_MODELS = Flag("--seed-models", "arena.seed_models", "models ranked round-robin first", nargs="+")


PROMPTS = Flag("--prompts-per-comparison", "arena.prompts_per_comparison", "prompts judged per model pair", type=int)


FLAGS = {
    "arena": (
        *(CONFIG, TRAIN, OUT, NAME, JUDGE_RUN, JUDGE_MODEL, VERDICTS, GRADES, NOISE, LLM, VOTES, CROWD),
        *(SEED_MODELS, PROMPTS, PER_JUDGE, BUDGET, STYLE, SET),
    )
}


def main(args: argparse.Namespace) -> int:
    from analysis.arena.settings import ArenaConfig

    cfg = config_from_args(ArenaConfig, args, FLAGS["arena"])
    out = run_arena(cfg)
    print_table(f"arena ranking ({out['summary']['judgments']} judgments)", out["table"], digits=3)
    if "budget_note" in out["summary"]:
        console.print(out["summary"]["budget_note"])
    console.print(f"wrote {cfg.run_dir}")
    return 0
