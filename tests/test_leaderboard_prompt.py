"""Per-prompt leaderboard from the model-aware predictor, on a tiny synthetic pairs file."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from competition.config import load_config
from competition.errors import InputError
from models.leaderboard.prompt import run_prompt_leaderboard
from models.leaderboard.settings import PromptLeaderboardConfig

MODELS = {"verbose-pro": 60, "mid-size": 25, "tiny": 4}  # words per answer: longer answers win here


def pairs_csv(path, n_prompts=24, seed=0):
    rng = np.random.default_rng(seed)
    rows, grades = [], []
    for p in range(n_prompts):
        prompt = json.dumps([f"question number {p} about topic {p % 5}"])
        for m, words in MODELS.items():
            grades.append({"question_id": f"q{p}", "model": m, "grade": words // 6})
        for a, b in combinations(MODELS, 2):
            if rng.random() < 0.5:
                a, b = b, a
            winner = [int(MODELS[a] > MODELS[b]), int(MODELS[a] < MODELS[b]), 0]
            rows.append(
                {
                    "id": len(rows),
                    "model_a": a,
                    "model_b": b,
                    "prompt": prompt,
                    "response_a": json.dumps([" ".join(["word"] * MODELS[a]) + f" p{p}"]),
                    "response_b": json.dumps([" ".join(["word"] * MODELS[b]) + f" p{p}"]),
                    "winner_model_a": winner[0],
                    "winner_model_b": winner[1],
                    "winner_tie": winner[2],
                    "question_id": f"q{p}",
                }
            )
    pd.DataFrame(rows).to_csv(path / "pairs.csv", index=False)
    pd.DataFrame(grades).to_csv(path / "grades.csv", index=False)
    return path


@pytest.fixture
def cfg(tmp_path):
    pairs_csv(tmp_path)
    sets = [
        f"data.train={str(tmp_path / 'pairs.csv')!r}",
        f"data.grades={str(tmp_path / 'grades.csv')!r}",
        f"runs_dir={str(tmp_path)!r}",
        'groups=["lengths"]',
        "cache_dir=''",
        "folds=3",
        "lgbm.max_rounds=40",
        "lgbm.min_data_in_leaf=3",
        "lgbm.early_stopping_share=0",
        "lgbm.num_threads=1",
    ]
    return load_config(PromptLeaderboardConfig, None, sets)


def test_ranks_the_models_of_one_prompt_and_writes_heatmap(cfg):
    result = run_prompt_leaderboard(cfg, prompt_id="q3")
    assert result.table["model"].tolist() == ["verbose-pro", "mid-size", "tiny"]
    assert result.table["true_grade"].is_monotonic_decreasing
    assert np.allclose(result.win_matrix + result.win_matrix.T, 1.0)
    assert (result.run_dir / "prompt_q3.png").exists() and (result.run_dir / "prompt_q3.csv").exists()


def test_ranking_does_not_depend_on_the_order_models_are_listed(cfg):
    one = run_prompt_leaderboard(cfg, prompt_id="q5", models=("tiny", "verbose-pro", "mid-size"), write=False)
    two = run_prompt_leaderboard(cfg, prompt_id="q5", models=("mid-size", "tiny", "verbose-pro"), write=False)
    assert one.table["model"].tolist() == two.table["model"].tolist()
    assert np.allclose(one.table["score"], two.table["score"], atol=1e-6)


def test_prompt_by_text_and_helpful_errors(cfg):
    by_text = run_prompt_leaderboard(cfg, prompt_text="Question number 7 about   topic 2", write=False)
    assert by_text.prompt_key == "q7"
    with pytest.raises(InputError, match="needs every model's answer"):
        run_prompt_leaderboard(cfg, prompt_text="never asked", write=False)
    with pytest.raises(InputError, match="no answer to this prompt"):
        run_prompt_leaderboard(cfg, prompt_id="q1", models=("tiny", "gpt-9"), write=False)


def test_evaluation_reports_log_loss_with_and_without_model_names(cfg):
    evaluation = run_prompt_leaderboard(cfg, prompt_id="q0", evaluate=True, write=False).evaluation
    for tag in ("with_model_names", "without_model_names", "names_only_bradley_terry"):
        assert evaluation[tag]["log_loss"] < evaluation[tag]["prior_log_loss"]
        assert evaluation[tag]["per_prompt_leaderboard"]["mean_spearman_vs_grades"] > 0.9
