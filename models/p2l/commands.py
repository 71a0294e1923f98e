"""A fitted P2L run inside `prompt-leaderboard --p2l` (one new prompt, or a file of prompts) and `route --p2l`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from competition.config import save_config
from competition.errors import InputError
from competition.folds import normalise_prompt
from competition.rundir import check_outputs, safe_name, staged_unit
from models.leaderboard.plots import plot_win_matrix
from models.leaderboard.prompt import RUN_KIND, PromptLeaderboard, chosen_prompt_text
from models.leaderboard.settings import PromptLeaderboardConfig
from models.p2l.uses import (
    aggregate_leaderboard,
    chosen_models,
    field_win_rates,
    fold_coefficients,
    load_p2l_run,
    out_of_fold_table,
    prompt_leaderboard,
)
from models.routing.evaluate import read_prompts


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


def run_p2l_leaderboard(cfg: PromptLeaderboardConfig, write: bool = True) -> PromptLeaderboard:
    """A leaderboard for one prompt, or the aggregate over a file of prompts, from the run's fold models."""
    check_p2l_request(cfg)
    if write:
        check_outputs([], [cfg.data.test, cfg.p2l.run, cfg.p2l.prompts], cfg.run_dir, RUN_KIND)
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
        with staged_unit(cfg.run_dir, RUN_KIND, {"prompt": key, "file": stem, "p2l": str(cfg.p2l.run)}) as staging:
            save_config(cfg, staging / "config.toml")
            table.to_csv(staging / f"{stem}.csv", index=False)
            plot_win_matrix(wins, table["model"].tolist(), title, staging / f"{stem}.png")
        result.run_dir = cfg.run_dir
    return result


def out_of_fold_win_rates(run_dir: str, prompt_ids, models: list[str]) -> np.ndarray:
    """(prompts, models) win rates against the field of `models`, from each prompt's held-out coefficients."""
    table = out_of_fold_table(run_dir)
    coefficients = table.pivot_table(index="group", columns="model", values="coefficient")
    ties = table.drop_duplicates("group").set_index("group")["tie"]
    wanted = [str(p) for p in prompt_ids]
    missing_prompts = [p for p in wanted if p not in coefficients.index]
    if missing_prompts:
        raise InputError(
            f"{len(missing_prompts)} prompts have no coefficients in this P2L run, e.g. {missing_prompts[0]!r}", run_dir
        )
    missing_models = [m for m in models if m not in coefficients.columns]
    if missing_models:
        raise InputError(f"model {missing_models[0]!r} is not in this P2L run", run_dir)
    theta = coefficients.loc[wanted, models].to_numpy(dtype=np.float64)
    if np.isnan(theta).any():
        raise InputError("some held-out coefficients are missing (a fold model never saw one of the models)", run_dir)
    tie_model = load_p2l_run(run_dir).tie_model
    return field_win_rates(theta, ties.loc[wanted].to_numpy(dtype=np.float64), tie_model)


def new_prompt_win_rates(run_dir: str, prompts: list[list[str | None]], models: list[str]) -> np.ndarray:
    """(prompts, models) win rates for prompts no model saw: the fold models' mean coefficients."""
    fitted = load_p2l_run(run_dir)
    theta, tie = fold_coefficients(fitted, prompts, chosen_models(fitted, models))
    return field_win_rates(theta.mean(axis=0), tie.mean(axis=0), fitted.tie_model)
