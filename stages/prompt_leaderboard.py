"""`prompt-leaderboard`: rank the models of one prompt, from the model-aware predictor trained on every other
prompt (analysis/leaderboard/prompt.py), or from a P2L run's fold models for any prompt or a file of prompts
(analysis/p2l.py); one unit with the table and the pairwise heatmap.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.leaderboard.plots import plot_win_matrix
from analysis.leaderboard.prompt import (
    PromptLeaderboard,
    answers_for,
    chosen_prompt_text,
    evaluate_predictor,
    feature_groups,
    find_prompt,
    load_pairs,
    predictor,
    rank_models,
)
from analysis.leaderboard.settings import PromptLeaderboardConfig
from analysis.p2l import (
    aggregate_leaderboard,
    chosen_models,
    load_p2l_run,
    prompt_leaderboard,
)
from competition.errors import InputError
from competition.folds import normalise_prompt
from competition.rundir import check_run, run_unit, safe_name
from data.tables import read_grades, read_prompts
from features.registry import attach_features
from models.bradley_terry import ELO_PER_LOGIT


def check_request(cfg: PromptLeaderboardConfig) -> None:
    """What can be refused before any file is read."""
    if not (cfg.prompt_id or cfg.prompt or cfg.row):
        raise InputError("name a prompt: --prompt-id, --prompt or --row with --test")
    if cfg.row is not None and not cfg.data.test:
        raise InputError("--row needs --test (the CSV whose row holds the prompt)")


def run_prompt_leaderboard(cfg: PromptLeaderboardConfig, write: bool = True) -> PromptLeaderboard:
    """Ranks the models of one prompt with the predictor trained on every other prompt; with `write`, one unit."""
    check_request(cfg)
    if write:
        check_run(cfg)
    grades = read_grades(cfg.data.grades) if cfg.data.grades else None
    turns = chosen_prompt_text(cfg)
    frame = load_pairs(cfg)
    key = find_prompt(frame, cfg, turns)
    prompt, answers = answers_for(frame, key)
    names = sorted(answers) if not cfg.models else list(cfg.models)
    unknown = [m for m in names if m not in answers]
    if unknown:
        raise InputError(f"model {unknown[0]!r} has no answer to this prompt (answered: {', '.join(sorted(answers))})")
    if len(names) < 2:
        raise InputError("rank at least two models (this prompt has fewer answers)", cfg.data.train)
    # Features of the whole file (cached across prompts), then the rows of every other prompt: this one stays unseen.
    attached = attach_features(frame, feature_groups(cfg), cfg.features.cache_dir)
    others = np.flatnonzero((frame["group"] != key).to_numpy())
    model = predictor(cfg, cfg.cv.seed).fit(
        attached.iloc[others], frame["label"].to_numpy()[others], frame["group"].to_numpy()[others]
    )
    logits, matrix = rank_models(model, prompt, answers, names)
    table = pd.DataFrame(
        {"model": names, "score": 1000.0 + ELO_PER_LOGIT * logits, "mean_win_prob": (matrix.sum(axis=1) - 0.5) / (len(names) - 1)}
    )
    if grades is not None:
        table["true_grade"] = table["model"].map(grades[grades["question_id"] == key].set_index("model")["grade"])
    table = table.sort_values("score", ascending=False, ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    result = PromptLeaderboard(key, table, matrix, evaluate_predictor(frame, cfg, grades=grades) if cfg.evaluate else {})
    if write:
        result.run_dir = write_outputs(cfg, result, logits, names)
    return result


def write_outputs(cfg: PromptLeaderboardConfig, result: PromptLeaderboard, logits: np.ndarray, names: list[str]) -> Path:
    """The run directory as one unit; the file names carry the prompt id made file-safe (ids come from data)."""
    stem = f"prompt_{safe_name(result.prompt_key)}"
    order = np.argsort(-logits)
    with run_unit(cfg, {"prompt": result.prompt_key, "file": stem}) as staging:
        result.table.to_csv(staging / f"{stem}.csv", index=False)
        title = f"predicted P(row beats column), prompt {result.prompt_key[:60]}"
        plot_win_matrix(result.win_matrix[np.ix_(order, order)], [names[i] for i in order], title, staging / f"{stem}.png")
        if result.evaluation:
            (staging / "predictor_evaluation.json").write_text(json.dumps(result.evaluation, indent=1), encoding="utf-8")
    return cfg.run_dir


def check_p2l_request(cfg: PromptLeaderboardConfig) -> None:
    """What can be refused before any file is read."""
    if cfg.prompt_id:
        raise InputError(
            "--p2l ranks a prompt by its text (--prompt, or --row with --test) or a file of prompts (--prompts); "
            f"held-out coefficients of the training prompts are in {Path(cfg.p2l.run) / 'coefficients.parquet'}"
        )
    single = bool(cfg.prompt) or cfg.row is not None
    if single == bool(cfg.p2l.prompts):
        raise InputError("with --p2l, name either one prompt (--prompt, or --row with --test) or a file of prompts (--prompts)")
    if cfg.row is not None and not cfg.data.test:
        raise InputError("--row needs --test (the CSV whose row holds the prompt)")
    defaults = type(cfg)()
    unread = {
        "--evaluate": cfg.evaluate,
        "--grades": bool(cfg.data.grades),
        "--train": cfg.data.train != defaults.data.train,
        "--max-rows": cfg.data.max_rows is not None,
        "--folds": cfg.cv.folds != defaults.cv.folds,
        "--seed": cfg.cv.seed != defaults.cv.seed,
    }
    given = [flag for flag, changed in unread.items() if changed]
    if given:
        raise InputError(f"{given[0]} is not read with --p2l (the P2L run's fold models rank the prompt): leave it out")


def run_p2l_leaderboard(cfg: PromptLeaderboardConfig, write: bool = True) -> PromptLeaderboard:
    """A leaderboard for one prompt, or the aggregate over a file of prompts, from the run's fold models."""
    check_p2l_request(cfg)
    if write:
        check_run(cfg)
    fitted = load_p2l_run(cfg.p2l.run)
    models = chosen_models(fitted, cfg.models)
    if len(models) < 2:
        raise InputError("rank at least two models", cfg.p2l.run)
    if cfg.p2l.prompts:
        prompts = read_prompts(cfg.p2l.prompts)["prompt"].tolist()
        table, wins = aggregate_leaderboard(fitted, prompts, models, cfg.p2l.level)
        key, title = "aggregate", f"P2L aggregate over {len(prompts)} prompts: P(row beats column)"
    else:
        turns = chosen_prompt_text(cfg)
        table, wins = prompt_leaderboard(fitted, turns, models, cfg.p2l.level)
        key = hashlib.sha1(normalise_prompt(turns).encode("utf-8", "replace")).hexdigest()
        title = f"P2L: P(row beats column), prompt {normalise_prompt(turns)[:50]!r}"
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    result = PromptLeaderboard(key, table, wins, {})
    if write:
        stem = "aggregate" if cfg.p2l.prompts else f"prompt_{safe_name(key)}"
        with run_unit(cfg, {"prompt": key, "file": stem, "p2l": str(cfg.p2l.run)}) as staging:
            table.to_csv(staging / f"{stem}.csv", index=False)
            plot_win_matrix(wins, table["model"].tolist(), title, staging / f"{stem}.png")
        result.run_dir = cfg.run_dir
    return result
