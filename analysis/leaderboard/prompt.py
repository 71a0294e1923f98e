"""Model-aware preference predictor and the per-prompt leaderboard built from it.

The predictor is the spine's LightGBM (`LGBMPreference`) over the registry's features plus the opt-in
`model_names` group, so it sees (prompt, both answers, both model identities). A leaderboard for one
prompt needs each model's answer to that prompt: they are taken from the training file's rows for that
prompt (arena-bench-pairs holds every model's answer for every prompt). The predictor is trained on the
other prompts only, then every pair of models is predicted and Bradley-Terry is fitted to the predicted
pairwise win matrix (ties count half). Out-of-fold figures come from the cross-fit loop over the fold table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.leaderboard.settings import PromptLeaderboardConfig
from competition.crossfit import cross_fit
from competition.errors import InputError
from competition.folds import folds_for, normalise_prompt
from competition.metric import score_report
from data.labelled import load_labelled
from data.loader import load_arena_csv
from data.tables import read_grades
from features.registry import FeatureConfig, attach_features
from models.bradley_terry import BradleyTerry
from models.lgbm import LGBMPreference
from models.names_bradley_terry import NamesBradleyTerry

log = logging.getLogger(__name__)


@dataclass
class PromptLeaderboard:
    prompt_key: str
    table: pd.DataFrame
    win_matrix: np.ndarray
    evaluation: dict
    run_dir: Path | None = None


def feature_groups(cfg: PromptLeaderboardConfig, with_names: bool = True) -> tuple[str, ...]:
    groups = tuple(g for g in cfg.features.groups if g != "model_names")
    return groups + ("model_names",) if with_names else groups


def predictor(cfg: PromptLeaderboardConfig, seed: int, with_names: bool = True) -> LGBMPreference:
    """The (model-aware) LightGBM; it reads attached feature columns, and builds them uncached for new pairs."""
    return LGBMPreference(cfg.lgbm, FeatureConfig(feature_groups(cfg, with_names), None), seed=seed)


def load_pairs(cfg: PromptLeaderboardConfig) -> pd.DataFrame:
    return load_labelled(cfg.data, "a model-aware predictor")


def out_of_fold(attached: pd.DataFrame, folds: np.ndarray, cfg: PromptLeaderboardConfig, with_names: bool) -> np.ndarray:
    """(n, 3) out-of-fold probabilities of the LightGBM predictor; `attached` carries the feature columns."""
    result = cross_fit(
        lambda fold: predictor(cfg, cfg.cv.seed + fold, with_names),
        attached,
        attached["label"].to_numpy(),
        folds,
        attached["group"].to_numpy(),
        description=f"folds ({'with' if with_names else 'without'} model names)",
    )
    return result.oof


def names_only_out_of_fold(frame: pd.DataFrame, folds: np.ndarray) -> np.ndarray:
    """(n, 3) out-of-fold probabilities of the global leaderboard alone: Davidson Bradley-Terry on the model names."""
    result = cross_fit(
        lambda fold: NamesBradleyTerry("davidson"),
        frame,
        frame["label"].to_numpy(),
        folds,
        frame["group"].to_numpy(),
        description="folds (names only)",
    )
    return result.oof


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


def evaluate_predictor(frame: pd.DataFrame, cfg: PromptLeaderboardConfig, names_only: bool = False, grades=None) -> dict:
    """Out-of-fold log loss with and without model names (and of the names-only global leaderboard), grouped by
    prompt; with grades, how well per-prompt leaderboards built from each one's predictions match the grades.

    `names_only` computes the Bradley-Terry baseline alone (seconds instead of LightGBM's minutes).
    """
    result: dict = {"rows": len(frame), "prompts": int(frame["group"].nunique()), "folds": cfg.cv.folds}
    y = frame["label"].to_numpy()
    if grades is None and cfg.data.grades:
        grades = read_grades(cfg.data.grades)
    folds = folds_for(frame, cfg.cv)
    runs = {"names_only_bradley_terry": lambda: names_only_out_of_fold(frame, folds)}
    if not names_only:
        attached = attach_features(frame, feature_groups(cfg), cfg.features.cache_dir)
        runs |= {
            "without_model_names": lambda: out_of_fold(attached, folds, cfg, with_names=False),
            "with_model_names": lambda: out_of_fold(attached, folds, cfg, with_names=True),
        }
    for tag, predict in runs.items():
        oof = predict()
        result[tag] = score_report(y, oof)
        if grades is not None:
            result[tag]["per_prompt_leaderboard"] = per_prompt_rank_agreement(frame, oof, grades)
    return result


def find_prompt(frame: pd.DataFrame, cfg: PromptLeaderboardConfig, turns: list[str | None] | None) -> str:
    """The group key of the prompt, by question_id (or prompt hash) or by (normalised) text."""
    if cfg.prompt_id:
        if cfg.prompt_id not in set(frame["group"]):
            examples = ", ".join(frame["group"].drop_duplicates().head(3))
            raise InputError(
                f"prompt id {cfg.prompt_id!r} is not in this file (ids are question_id, else a hash of the prompt; e.g. {examples})",
                cfg.data.train,
            )
        return cfg.prompt_id
    wanted = normalise_prompt(turns or [])
    matches = frame.loc[frame["prompt"].map(normalise_prompt) == wanted, "group"]
    if matches.empty:
        raise InputError(
            "this prompt is not in the file; a per-prompt leaderboard needs every model's answer to it", cfg.data.train
        )
    return str(matches.iloc[0])


def chosen_prompt_text(cfg: PromptLeaderboardConfig) -> list[str | None] | None:
    """The prompt's turns when it is named by text or by a row of data.test (None when named by id)."""
    if cfg.row is None:
        return [cfg.prompt] if cfg.prompt else None
    test = load_arena_csv(cfg.data.test)
    if cfg.row > len(test):
        raise InputError(f"row must be between 1 and {len(test)}", cfg.data.test, cfg.row)
    return test["prompt"].iloc[cfg.row - 1]


def answers_for(frame: pd.DataFrame, key: str) -> tuple[list[str | None], dict[str, list[str | None]]]:
    rows = frame[frame["group"] == key]
    answers = dict(zip(rows["model_a"], rows["response_a"], strict=True)) | dict(
        zip(rows["model_b"], rows["response_b"], strict=True)
    )
    return rows["prompt"].iloc[0], answers


def rank_models(model: LGBMPreference, prompt: list, answers: dict[str, list], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
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
    probs = model.predict_proba(frame)  # features built inside; averaged over both orders
    i, j = np.array(pairs).T
    wins = probs[:, 0] + 0.5 * probs[:, 2]
    matrix = np.full((len(names), len(names)), 0.5)
    matrix[i, j], matrix[j, i] = wins, 1 - wins
    return BradleyTerry(len(names)).fit(i, j, wins).ratings_, matrix
