"""Per-prompt leaderboard from the model-aware predictor, on a tiny synthetic pairs file."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from analysis.leaderboard.settings import PromptLeaderboardConfig
from competition.config import load_config
from competition.errors import InputError
from stages.prompt_leaderboard import run_prompt_leaderboard

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
        'features.groups=["lengths"]',
        "features.cache_dir=''",
        "cv.folds=3",
        "cv.fold_dir=''",
        "lgbm.max_rounds=40",
        "lgbm.min_data_in_leaf=3",
        "lgbm.early_stopping_share=0",
        "lgbm.num_threads=1",
    ]
    return load_config(PromptLeaderboardConfig, None, sets)


def test_ranks_the_models_of_one_prompt_and_writes_heatmap(cfg, tmp_path):
    result = run_prompt_leaderboard(replace(cfg, prompt_id="q3"))
    assert result.table["model"].tolist() == ["verbose-pro", "mid-size", "tiny"]
    assert result.table["true_grade"].is_monotonic_decreasing
    assert np.allclose(result.win_matrix + result.win_matrix.T, 1.0)
    assert result.run_dir == tmp_path / "prompt_leaderboard" / "sample"
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["config.toml", "manifest.json", "prompt_q3.csv", "prompt_q3.png"]


def test_ranking_does_not_depend_on_the_order_models_are_listed(cfg):
    one = run_prompt_leaderboard(replace(cfg, prompt_id="q5", models=("tiny", "verbose-pro", "mid-size")), write=False)
    two = run_prompt_leaderboard(replace(cfg, prompt_id="q5", models=("mid-size", "tiny", "verbose-pro")), write=False)
    assert one.table["model"].tolist() == two.table["model"].tolist()
    assert np.allclose(one.table["score"], two.table["score"], atol=1e-6)


def test_prompt_by_text_and_helpful_errors(cfg):
    by_text = run_prompt_leaderboard(replace(cfg, prompt="Question number 7 about   topic 2"), write=False)
    assert by_text.prompt_key == "q7"
    with pytest.raises(InputError, match="needs every model's answer"):
        run_prompt_leaderboard(replace(cfg, prompt="never asked"), write=False)
    with pytest.raises(InputError, match="no answer to this prompt"):
        run_prompt_leaderboard(replace(cfg, prompt_id="q1", models=("tiny", "gpt-9")), write=False)


def test_evaluation_reports_log_loss_with_and_without_model_names(cfg):
    evaluation = run_prompt_leaderboard(replace(cfg, prompt_id="q0", evaluate=True), write=False).evaluation
    for tag in ("with_model_names", "without_model_names", "names_only_bradley_terry"):
        assert evaluation[tag]["log_loss"] < evaluation[tag]["prior_log_loss"]
        assert evaluation[tag]["per_prompt_leaderboard"]["mean_spearman_vs_grades"] > 0.9


def test_out_of_fold_figures_come_from_the_fold_table_and_the_cross_fit_loop(cfg):
    """The names-only baseline through cross_fit equals a hand-written loop over the same fold table's folds."""
    from analysis.leaderboard.prompt import load_pairs, names_only_out_of_fold
    from competition.folds import fold_table, folds_for
    from data.battles import encode_models
    from models.bradley_terry import BradleyTerry, aggregate

    frame = load_pairs(cfg)
    folds = folds_for(frame, cfg.cv)
    table = fold_table(frame["id"], frame["group"], frame["label"].to_numpy(), 3, cfg.cv.seed, None)
    assert np.array_equal(folds, table["fold"].to_numpy())
    assert all(frame.loc[folds == k, "group"].isin(frame.loc[folds != k, "group"]).sum() == 0 for k in range(3))
    oof = names_only_out_of_fold(frame, folds)
    outcome = np.array([1.0, 0.0, 0.5])[frame["label"].to_numpy()]
    for k in range(3):
        fit, held = folds != k, folds == k
        a, b, names = encode_models(frame[fit])
        model = BradleyTerry(len(names), "davidson").fit(*aggregate(a, b, outcome[fit]))
        a, b, _ = encode_models(frame[held], names)
        assert np.allclose(oof[held], model.predict_proba(a, b), atol=1e-12)


def test_names_only_estimator_saves_and_loads(cfg, tmp_path):
    from analysis.leaderboard.prompt import load_pairs
    from models.names_bradley_terry import NamesBradleyTerry

    frame = load_pairs(cfg)
    model = NamesBradleyTerry().fit(frame, frame["label"].to_numpy())
    model.save(tmp_path / "m")
    again = NamesBradleyTerry.load(tmp_path / "m")
    assert np.allclose(again.predict_proba(frame), model.predict_proba(frame))
    unseen = frame.head(2).assign(model_a="never-seen")
    assert np.allclose(model.predict_proba(unseen)[:, 0], model.predict_proba(unseen)[:, 1])


def test_folds_without_evaluate_is_refused_not_ignored(tmp_path, capsys):
    """Without --evaluate nothing is cross-fitted, so a --folds given there would be silently unread."""
    from cli import main as cli_main

    pairs_csv(tmp_path)
    argv = ["prompt-leaderboard", "--train", str(tmp_path / "pairs.csv"), "--prompt-id", "q1", "--out", str(tmp_path / "pl")]
    assert cli_main([*argv, "--folds", "3"]) == 2
    err = capsys.readouterr().err
    assert "--folds is read only with --evaluate" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pl").exists()
