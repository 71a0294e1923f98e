"""arena: rank the models of a pairs file from automatic pairwise judgments (De-Arena: seed models round-robin,
then binary insertion and neighbour refinement), Bradley-Terry ratings with bootstrap intervals (models/arena/).

Run directory: ranking.csv, summary.json, config.toml, manifest.json (a unit), and judgments/log.jsonl, every
judgment as it is made: a killed run resumes from it, and a rerun with the same settings repeats exactly.
"""

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


SEED_MODELS = Flag("--seed-models", "arena.seed_models", "models ranked round-robin first", nargs="+")


PROMPTS = Flag("--prompts-per-comparison", "arena.prompts_per_comparison", "prompts judged per model pair", type=int)


FLAGS = {"arena": (CONFIG, TRAIN, OUT, NAME, JUDGE_RUN, JUDGE_MODEL, VERDICTS, GRADES, NOISE, LLM, SEED_MODELS, PROMPTS, SET)}


def main(args: argparse.Namespace) -> int:
    from analysis.arena.settings import ArenaConfig

    cfg = config_from_args(ArenaConfig, args, FLAGS["arena"])
    out = run_arena(cfg)
    print_table(f"arena ranking ({out['summary']['judgments']} judgments)", out["table"], digits=3)
    console.print(f"wrote {cfg.run_dir}")
    return 0
