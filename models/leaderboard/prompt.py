"""Model-aware preference predictor and the per-prompt leaderboard built from it.

The predictor is the spine's LightGBM (`LGBMPreference`) over the registry's features plus the opt-in
`model_names` group, so it sees (prompt, both answers, both model identities). A leaderboard for one
prompt needs each model's answer to that prompt: they are taken from the training file's rows for that
prompt (arena-bench-pairs holds every model's answer for every prompt). The predictor is trained on the
other prompts only, then every pair of models is predicted and Bradley-Terry is fitted to the predicted
pairwise win matrix (ties count half).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from competition.atomic import write_atomic, write_text_atomic
from competition.config import save_config
from competition.errors import InputError
from competition.folds import assign_folds, normalise_prompt, prompt_groups
from competition.metric import score_report
from competition.progress import progress
from data.loader import load_arena_csv
from features.registry import build_features
from models.leaderboard.battles import encode_models
from models.leaderboard.bradley_terry import ELO_PER_LOGIT, BradleyTerry, aggregate
from models.leaderboard.plots import plot_win_matrix
from models.leaderboard.settings import PromptLeaderboardConfig
from models.lgbm import LGBMPreference

log = logging.getLogger(__name__)


@dataclass
class PromptLeaderboard:
    prompt_key: str
    table: pd.DataFrame
    win_matrix: np.ndarray
    evaluation: dict
    run_dir: Path | None = None


def feature_groups(cfg: PromptLeaderboardConfig, with_names: bool = True) -> tuple[str, ...]:
    groups = tuple(g for g in cfg.groups if g != "model_names")
    return groups + ("model_names",) if with_names else groups


def load_pairs(cfg: PromptLeaderboardConfig) -> pd.DataFrame:
    frame = load_arena_csv(cfg.data.train, require_labels=True, max_rows=cfg.data.max_rows)
    if "model_a" not in frame.columns:
        raise InputError("a model-aware predictor needs model_a/model_b columns", cfg.data.train, column="model_a")
    frame["group"] = prompt_groups(frame).to_numpy()
    return frame


def out_of_fold(frame: pd.DataFrame, cfg: PromptLeaderboardConfig, with_names: bool) -> np.ndarray:
    """(n, 3) out-of-fold probabilities, folds grouped by prompt."""
    X = build_features(frame, feature_groups(cfg, with_names), cfg.cache_dir)
    y, groups = frame["label"].to_numpy(), frame["group"].to_numpy()
    folds = assign_folds(y, frame["group"], cfg.folds, cfg.seed)
    oof = np.zeros((len(frame), 3))
    for fold in progress(range(cfg.folds), f"folds ({'with' if with_names else 'without'} model names)"):
        fit, held = folds != fold, folds == fold
        model = LGBMPreference(cfg.lgbm, seed=cfg.seed + fold).fit(X[fit], y[fit], groups[fit])
        oof[held] = model.predict_proba(X[held])
    return oof


def per_prompt_rank_agreement(frame: pd.DataFrame, probs: np.ndarray, grades: pd.DataFrame) -> dict[str, float]:
    """Mean Spearman, over prompts, between Bradley-Terry scores fitted to predicted pairs and the true grades."""
    truth = grades.assign(question_id=grades["question_id"].astype(str)).set_index(["question_id", "model"])["grade"]
    correlations = []
    for key, rows in frame.groupby("group").indices.items():
        names = sorted(set(frame["model_a"].iloc[rows]) | set(frame["model_b"].iloc[rows]))
        index = {m: i for i, m in enumerate(names)}
        a = frame["model_a"].iloc[rows].map(index).to_numpy()
        b = frame["model_b"].iloc[rows].map(index).to_numpy()
        scores = BradleyTerry(len(names)).fit(a, b, probs[rows, 0] + 0.5 * probs[rows, 2]).ratings_
        true = np.array([truth.get((key, m), np.nan) for m in names])
        if np.isfinite(true).sum() > 2 and np.nanstd(true) > 0:
            ok = np.isfinite(true)
            correlations.append(spearmanr(scores[ok], true[ok]).statistic)
    return {"prompts": len(correlations), "mean_spearman_vs_grades": float(np.nanmean(correlations))}


def names_only_out_of_fold(frame: pd.DataFrame, cfg: PromptLeaderboardConfig) -> np.ndarray:
    """(n, 3) out-of-fold probabilities of the global leaderboard alone: Davidson Bradley-Terry on the model names.

    The baseline a model-aware predictor must beat: the same ranking for every prompt, no texts.
    """
    y = frame["label"].to_numpy()
    folds = assign_folds(y, frame["group"], cfg.folds, cfg.seed)
    outcome = np.array([1.0, 0.0, 0.5])[y]
    oof = np.zeros((len(frame), 3))
    for fold in range(cfg.folds):
        fit, held = folds != fold, folds == fold
        a, b, names = encode_models(frame[fit])
        model = BradleyTerry(len(names), "davidson").fit(*aggregate(a, b, outcome[fit]))
        a, b, _ = encode_models(frame[held], names)
        known = (a >= 0) & (b >= 0)
        tie = model.tie_rate_
        part = np.tile([(1 - tie) / 2, (1 - tie) / 2, tie], (int(held.sum()), 1))  # a model never seen in training
        part[known] = model.predict_proba(a[known], b[known])
        oof[held] = part
    return oof


def evaluate_predictor(frame: pd.DataFrame, cfg: PromptLeaderboardConfig, names_only: bool = False) -> dict:
    """Out-of-fold log loss with and without model names (and of the names-only global leaderboard), grouped by
    prompt; with grades, how well per-prompt leaderboards built from each one's predictions match the grades.

    `names_only` computes the Bradley-Terry baseline alone (seconds instead of LightGBM's minutes).
    """
    result: dict = {"rows": len(frame), "prompts": int(frame["group"].nunique()), "folds": cfg.folds}
    y = frame["label"].to_numpy()
    grades = pd.read_csv(cfg.data.grades, dtype={"question_id": str}) if cfg.data.grades else None
    runs = {"names_only_bradley_terry": lambda: names_only_out_of_fold(frame, cfg)}
    if not names_only:
        runs |= {
            "without_model_names": lambda: out_of_fold(frame, cfg, with_names=False),
            "with_model_names": lambda: out_of_fold(frame, cfg, with_names=True),
        }
    for tag, predict in runs.items():
        oof = predict()
        result[tag] = score_report(y, oof)
        if grades is not None:
            result[tag]["per_prompt_leaderboard"] = per_prompt_rank_agreement(frame, oof, grades)
    return result


def find_prompt(frame: pd.DataFrame, prompt_id: str | None, prompt_text: list[str | None] | None) -> str:
    """The group key of the prompt, by question_id or by (normalised) text."""
    if prompt_id is not None:
        if prompt_id not in set(frame["group"]):
            examples = ", ".join(frame["group"].drop_duplicates().head(3))
            raise InputError(
                f"prompt id {prompt_id!r} is not in the training file (ids are question_id, else a hash of the prompt; e.g. {examples})"
            )
        return prompt_id
    if prompt_text is None:
        raise InputError("name a prompt: --prompt-id, --prompt or --row with --test")
    wanted = normalise_prompt(prompt_text)
    matches = frame.loc[frame["prompt"].map(normalise_prompt) == wanted, "group"]
    if matches.empty:
        raise InputError("this prompt is not in the training file; a per-prompt leaderboard needs every model's answer to it")
    return str(matches.iloc[0])


def answers_for(frame: pd.DataFrame, key: str) -> tuple[list[str | None], dict[str, list[str | None]]]:
    rows = frame[frame["group"] == key]
    answers = dict(zip(rows["model_a"], rows["response_a"], strict=True)) | dict(
        zip(rows["model_b"], rows["response_b"], strict=True)
    )
    return rows["prompt"].iloc[0], answers


def rank_models(
    model: LGBMPreference, groups: tuple[str, ...], prompt: list, answers: dict[str, list], names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(Bradley-Terry logits, matrix of P(row beats column)) from predicted probabilities of every pair."""
    pairs = list(combinations(range(len(names)), 2))
    frame = pd.DataFrame(
        {
            "id": [f"{i}-{j}" for i, j in pairs],
            "prompt": [prompt] * len(pairs),
            "response_a": [answers[names[i]] for i, _ in pairs],
            "response_b": [answers[names[j]] for _, j in pairs],
            "model_a": [names[i] for i, _ in pairs],
            "model_b": [names[j] for _, j in pairs],
        }
    )
    probs = model.predict_proba(build_features(frame, groups))  # averaged over both orders inside
    i, j = np.array(pairs).T
    wins = probs[:, 0] + 0.5 * probs[:, 2]
    matrix = np.full((len(names), len(names)), 0.5)
    matrix[i, j], matrix[j, i] = wins, 1 - wins
    return BradleyTerry(len(names)).fit(i, j, wins).ratings_, matrix


def run_prompt_leaderboard(
    cfg: PromptLeaderboardConfig,
    prompt_id: str | None = None,
    prompt_text: str | None = None,
    test_path: str | None = None,
    row: int | None = None,
    models: tuple[str, ...] | None = None,
    evaluate: bool = False,
    write: bool = True,
) -> PromptLeaderboard:
    frame = load_pairs(cfg)
    turns = [prompt_text] if prompt_text is not None else None
    if row is not None:
        test = load_arena_csv(test_path)
        if not 1 <= row <= len(test):
            raise InputError(f"row must be between 1 and {len(test)}", test_path, row)
        turns = test["prompt"].iloc[row - 1]
    key = find_prompt(frame, prompt_id, turns)
    prompt, answers = answers_for(frame, key)
    names = sorted(answers) if models is None else list(models)
    unknown = [m for m in names if m not in answers]
    if unknown:
        raise InputError(f"model {unknown[0]!r} has no answer to this prompt (answered: {', '.join(sorted(answers))})")
    if len(names) < 2:
        raise InputError("rank at least two models")
    groups = feature_groups(cfg)
    # Features of the whole file (cached across prompts), then the rows of every other prompt: this one stays unseen.
    others = (frame["group"] != key).to_numpy()
    X = build_features(frame, groups, cfg.cache_dir)[others]
    predictor = LGBMPreference(cfg.lgbm, seed=cfg.seed).fit(
        X, frame["label"].to_numpy()[others], frame["group"].to_numpy()[others]
    )
    logits, matrix = rank_models(predictor, groups, prompt, answers, names)
    table = pd.DataFrame(
        {"model": names, "score": 1000.0 + ELO_PER_LOGIT * logits, "mean_win_prob": (matrix.sum(axis=1) - 0.5) / (len(names) - 1)}
    )
    if cfg.data.grades:
        grades = pd.read_csv(cfg.data.grades, dtype={"question_id": str})
        table["true_grade"] = table["model"].map(grades[grades["question_id"] == key].set_index("model")["grade"])
    table = table.sort_values("score", ascending=False, ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    result = PromptLeaderboard(key, table, matrix, evaluate_predictor(frame, cfg) if evaluate else {})
    if write:
        out = cfg.run_dir
        save_config(cfg, out / "config.toml")
        write_atomic(out / f"prompt_{key}.csv", lambda p: table.to_csv(p, index=False))
        order = np.argsort(-logits)
        plot_win_matrix(
            matrix[np.ix_(order, order)],
            [names[i] for i in order],
            f"predicted P(row beats column), prompt {key}",
            out / f"prompt_{key}.png",
        )
        if result.evaluation:
            write_text_atomic(out / "predictor_evaluation.json", json.dumps(result.evaluation, indent=1))
        result.run_dir = out
    return result
