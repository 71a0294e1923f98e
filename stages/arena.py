"""arena: rank models from automatic pairwise judgments (De-Arena: seed models round-robin, then binary insertion
and window refinement; optional adaptive comparisons), Bradley-Terry ratings with bootstrap intervals
(analysis/arena/).

Run directory: ranking.csv, summary.json, config.toml, manifest.json (a unit), and judgments/<digest>.jsonl,
every verdict as it is made, in a self-verifying log named by the judges and data it belongs to: a killed run
resumes from it, a rerun with the same judges repeats exactly, and a rerun with other judges starts its own.
Every input, setting and comparison the procedure may need is checked before the first verdict is asked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from itertools import combinations
from pathlib import Path

import numpy as np

from competition.errors import InputError
from competition.rundir import check_run, file_digest, run_unit

JUDGMENTS_DIR = "judgments"


def folder_digest(path: Path) -> str:
    """A model folder's identity: its manifest when it has one (a run of this project), else every file's digest."""
    import hashlib

    if (path / "manifest.json").is_file():
        return file_digest(path / "manifest.json")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha256("".join(f"{p.relative_to(path)}:{file_digest(p)}" for p in files).encode()).hexdigest()


def read_table(path: Path, needed: list[str]):
    from data.loader import read_csv_checked

    table = read_csv_checked(path).rename(columns={"question_id": "prompt"})
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError("missing required column", path, column=missing[0])
    return table


def single_judge(cfg, frame, book):
    """(judge, identity) of the one judge that speaks for no model, or (None, None)."""
    from analysis.arena.judges import GenerativeJudge, ModelJudge, VerdictJudge, graded_oracle, run_judge
    from competition.folds import prompt_groups

    judge = cfg.judge
    if judge.votes:
        return book, {"kind": "votes", "file": file_digest(Path(judge.votes)), "both_bad": judge.both_bad}
    if judge.run:
        groups = prompt_groups(frame).astype(str).to_numpy()
        return run_judge(judge.run, frame, groups), {"kind": "run", "oof": file_digest(Path(judge.run) / "oof.parquet")}
    if judge.model:
        from models.registry import load_model

        path = Path(judge.model)
        path = path / "model" if (path / "model").is_dir() else path
        return ModelJudge(load_model(path), book, path.name), {"kind": "model", "folder": folder_digest(path)}
    if judge.llm:
        return GenerativeJudge(judge.llm, book), {"kind": "llm", "folder": folder_digest(Path(judge.llm))}
    if judge.grades:
        source = Path(judge.grades)
        table = read_table(source, ["prompt", "model", "grade"]).astype({"prompt": str, "model": str})
        identity = {"kind": "grades", "file": file_digest(source), "noise": judge.noise, "seed": cfg.arena.seed}
        return graded_oracle(table, book, judge.noise, cfg.arena.seed, source), identity
    if judge.verdicts:
        source = Path(judge.verdicts)
        table = read_table(source, ["prompt", "model_a", "model_b"])
        return VerdictJudge.from_table(table, source), {"kind": "verdicts", "file": file_digest(source)}
    return None, None


def crowd_judges(cfg, book) -> tuple[dict, dict, dict]:
    """(judges, identities, judge → model) of the crowd: each MODEL=PATH entry a judge speaking for MODEL."""
    from analysis.arena.judges import GenerativeJudge, VerdictJudge

    judges, identities, speaks_for = {}, {}, {}
    book.check_models([entry.partition("=")[0] for entry in cfg.judge.crowd], "crowd model")
    for entry in cfg.judge.crowd:
        model, _, source = entry.partition("=")
        path, name = Path(source), f"judge:{model}"
        if path.is_dir():
            judges[name], identities[name] = GenerativeJudge(path, book), {"kind": "llm", "folder": folder_digest(path)}
        else:
            table = read_table(path, ["prompt", "model_a", "model_b"])
            judges[name], identities[name] = VerdictJudge.from_table(table, path), {"kind": "verdicts", "file": file_digest(path)}
        speaks_for[name] = model
    return judges, identities, speaks_for


def check_comparisons(book, models: list[str], rank, votes: bool) -> None:
    """Every pair the procedure may compare shares enough prompts (recorded votes give what they have)."""
    if votes:
        return
    for x, y in combinations(models, 2):
        shared = len(book.items(x, y))
        if shared < rank.prompts_per_comparison:
            raise InputError(
                f"{x!r} and {y!r} share {shared} prompts, fewer than prompts_per_comparison={rank.prompts_per_comparison}"
            )


def check_crowd(speaks_for: dict, seeds: list[str], untied: bool) -> None:
    if untied or not speaks_for:
        return
    judged_seeds = [m for m in seeds if m in speaks_for.values()]
    if len(judged_seeds) < 3:
        raise InputError(
            "with crowd judges only, at least three seed models need a judge (a pair is judged by a third ranked model)"
        )


def style_function(book, names: tuple[str, ...]):
    """covariates(keys) for style control: feature differences of the two answers each verdict compared."""
    if not names:
        return None
    if not hasattr(book, "answers"):
        raise InputError("style control needs the answers' texts; recorded votes have none")
    import pandas as pd

    from analysis.leaderboard.ratings import style_covariates

    def covariates(keys):
        rows = [
            {
                "id": str(i),
                "prompt": book.prompts[item],
                "response_a": book.answers[(item, first)],
                "response_b": book.answers[(item, second)],
            }
            for i, (item, first, second) in enumerate(keys)
        ]
        return style_covariates(pd.DataFrame(rows), names)

    return covariates


def load_book(cfg):
    if cfg.judge.votes:
        from analysis.arena.votes import RecordedVotes
        from data.battles import read_battles

        return None, RecordedVotes(read_battles(cfg.judge.votes, cfg.judge.both_bad, cfg.data.max_rows), cfg.judge.votes)
    from analysis.arena.answers import AnswerBook
    from data.loader import load_arena_csv

    frame = load_arena_csv(cfg.data.train, max_rows=cfg.data.max_rows)
    return frame, AnswerBook.from_pairs(frame, cfg.data.train)


def check_judge_flags(cfg) -> None:
    """A setting that this judge set would not read is refused, naming its flag."""
    judge = cfg.judge
    unread = [
        (
            "--train",
            bool(judge.votes) and cfg.data.train != type(cfg.data)().train,
            "with --votes (the battles file is the data)",
        ),
        ("--crowd", bool(judge.votes) and bool(judge.crowd), "with --votes (crowd judges read answers; votes have none)"),
        ("--noise", judge.noise != 0 and not judge.grades, "without --grades (only the graded oracle adds noise)"),
        (
            "--per-judge-search",
            cfg.arena.per_judge_search and len(judge.sources()) + len(judge.crowd) < 2,
            "with a single judge (its own search is the crowd's search)",
        ),
    ]
    for flag, refused, reason in unread:
        if refused:
            raise InputError(f"{flag} is not read {reason}: leave it out")


def run_arena(cfg) -> dict:
    from analysis.arena.adaptive import spend
    from analysis.arena.log import JudgmentLog, log_path
    from analysis.arena.procedure import Arena, ArenaSettings
    from analysis.leaderboard.ratings import check_style_names

    judge, rank = cfg.judge, cfg.arena
    if not judge.sources() and not judge.crowd:
        raise InputError("name a judge: --judge-run, --judge-model, --verdicts, --grades, --llm, --votes or --crowd")
    check_judge_flags(cfg)
    data_file = judge.votes or cfg.data.train
    check_run(cfg)
    check_style_names(rank.style_features)
    frame, book = load_book(cfg)
    models = list(book.models)
    if len(models) < 3:
        raise InputError(f"{len(models)} models in the file: ranking needs at least 3", data_file)
    if rank.seed_models:
        book.check_models(rank.seed_models, "seed model")
    order = list(np.random.default_rng(rank.seed).permutation(models))
    seeds = list(rank.seed_models) or order[: rank.seed_count]
    others = [m for m in order if m not in seeds]
    check_comparisons(book, models, rank, bool(judge.votes))
    covariates = style_function(book, rank.style_features)
    untied, untied_identity = single_judge(cfg, frame, book)
    judges, identities, speaks_for = crowd_judges(cfg, book)
    check_crowd(speaks_for, seeds, untied is not None)
    if untied is not None:
        judges, identities = {"judge": untied, **judges}, {"judge": untied_identity, **identities}
    context = {"data": file_digest(Path(data_file)), "max_rows": cfg.data.max_rows, "judges": identities}
    log = JudgmentLog(log_path(cfg.run_dir / JUDGMENTS_DIR, context), context)
    settings = ArenaSettings(
        rank.prompts_per_comparison, rank.coarse_prompts, rank.window, 20, rank.bootstrap_rounds, rank.seed, rank.per_judge_search
    )
    arena = Arena(book, judges, settings, log, speaks_for)
    arena.rank(seeds, others)
    inserted = arena.judgments()
    budget_note = None
    if rank.budget > inserted:
        spend(arena, rank.budget, rank.adaptive_step)
    elif rank.budget:
        budget_note = f"arena.budget {rank.budget} is not above the insertion pass's {inserted} verdicts: nothing left to spend"
        logging.getLogger(__name__).warning(budget_note)
    table = arena.table(models, covariates)
    summary = {
        "models": len(models),
        "judgments": arena.judgments(),
        "judgments_insertion": inserted,
        "seed_models": seeds,
        "insertion_order": others,
        "judges": {name: speaks_for.get(name) for name in judges},
        "log": str(log.path.relative_to(cfg.run_dir)),
        "log_head": log.head,
        **({"budget_note": budget_note} if budget_note else {}),
    }
    with run_unit(cfg, {"models": len(models)}) as staging:
        table.to_csv(staging / "ranking.csv", index=False)
        (staging / "summary.json").write_text(json.dumps(summary | {"settings": asdict(settings)}, indent=1), encoding="utf-8")
    return {"table": table, "summary": summary}
