"""arena: rank the models of a pairs file from automatic pairwise judgments (De-Arena: seed models round-robin,
then binary insertion and neighbour refinement), Bradley-Terry ratings with bootstrap intervals (models/arena/).

Run directory: ranking.csv, summary.json, config.toml, manifest.json (a unit), and judgments/log.jsonl, every
judgment as it is made: a killed run resumes from it, and a rerun with the same settings repeats exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from competition.errors import InputError
from competition.rundir import check_run, run_unit

LOG_FILE = Path("judgments") / "log.jsonl"


def build_judge(cfg, frame, book):

    from analysis.arena.judges import GenerativeJudge, ModelJudge, VerdictJudge, graded_oracle, run_judge
    from competition.folds import prompt_groups

    judge = cfg.judge
    if not judge.sources():
        raise InputError("name a judge: --judge-run, --judge-model, --verdicts, --grades or --llm")
    groups = prompt_groups(frame).astype(str).to_numpy()
    if judge.run:
        return run_judge(judge.run, frame, groups)
    if judge.model:
        from models.registry import load_model

        path = Path(judge.model)
        return ModelJudge(load_model(path / "model" if (path / "model").is_dir() else path), book, path.name)
    if judge.llm:
        return GenerativeJudge(judge.llm, book)
    from data.loader import labels_from_columns, read_csv_checked

    source = Path(judge.grades or judge.verdicts)
    table = read_csv_checked(source).rename(columns={"question_id": "prompt"})
    needed = ["prompt", "model", "grade"] if judge.grades else ["prompt", "model_a", "model_b"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError("missing required column", source, column=missing[0])
    if judge.grades:
        return graded_oracle(table.astype({"prompt": str, "model": str}), book, judge.noise, cfg.arena.seed)
    probs = np.eye(3)[labels_from_columns(table, source)]
    return VerdictJudge.from_pairs_probabilities(table, table["prompt"].astype(str).to_numpy(), probs, source.name)


def run_arena(cfg) -> dict:
    from analysis.arena.answers import AnswerBook
    from analysis.arena.procedure import Arena, ArenaSettings, JudgmentLog
    from data.loader import load_arena_csv

    check_run(cfg)
    frame = load_arena_csv(cfg.data.train, max_rows=cfg.data.max_rows)
    book = AnswerBook.from_pairs(frame, cfg.data.train)
    rank = cfg.arena
    models = list(book.models)
    if rank.seed_models:
        book.check_models(rank.seed_models, "seed model")
    if len(models) < 3:
        raise InputError(f"{len(models)} models in the pairs file: ranking needs at least 3", cfg.data.train)
    judge = build_judge(cfg, frame, book)
    settings = ArenaSettings(rank.prompts_per_comparison, rank.coarse_prompts, rank.window, 20, rank.bootstrap_rounds, rank.seed)
    arena = Arena(book, {"judge": judge}, settings, JudgmentLog(cfg.run_dir / LOG_FILE))
    order = list(np.random.default_rng(rank.seed).permutation(models))
    seeds = list(rank.seed_models) or order[: rank.seed_count]
    others = [m for m in order if m not in seeds]
    arena.rank(seeds, others)
    table = arena.table(models)
    summary = {"models": len(models), "judgments": len(arena.asked), "seed_models": seeds, "insertion_order": others}
    with run_unit(cfg, {"models": len(models)}) as staging:
        table.to_csv(staging / "ranking.csv", index=False)
        (staging / "summary.json").write_text(json.dumps(summary | {"settings": asdict(settings)}, indent=1), encoding="utf-8")
    return {"table": table, "summary": summary}
