"""`dissect`: effects recovered from simulated pairs with honest intervals, invariant to the A/B exchange and to
row order; one-line errors for bad input; LightGBM SHAP values that add up to the model's raw score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.dissection.analysis import LABELS_JUDGE, dissect
from analysis.dissection.bayes import clustered_covariance, fit_posterior
from analysis.dissection.judges import label_targets
from analysis.dissection.properties import PROPERTY_NAMES, external_differences
from analysis.dissection.scenarios import scenario_of
from cli import main
from tests.conftest import make_arena_frame

TRUE_EFFECTS = np.array([0.8, -0.5, 0.0, 0.3])


def simulated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(TRUE_EFFECTS)))
    wins = rng.random(n) < 1 / (1 + np.exp(-x @ TRUE_EFFECTS))
    return x, wins.astype(float)


def test_effects_are_recovered_and_95_percent_intervals_cover_at_about_the_nominal_rate():
    covered = []
    for seed in range(60):
        x, y = simulated(1500, seed)
        posterior = fit_posterior(x, y, prior_sd=2.5)
        table = posterior.table()
        covered.append((table["effect_low"] <= TRUE_EFFECTS) & (TRUE_EFFECTS <= table["effect_high"]))
    rate = np.mean(covered)
    assert 0.90 <= rate <= 0.99  # 240 intervals; the nominal rate is 0.95
    x, y = simulated(20000, 99)
    np.testing.assert_allclose(fit_posterior(x, y).mean, TRUE_EFFECTS, atol=0.06)


def test_clustered_intervals_widen_by_the_copies_a_cluster_holds_and_match_independent_ones_without_copies():
    x, y = simulated(3000, 5)
    alone = fit_posterior(x, y)
    independent = clustered_covariance(x, y, alone, np.arange(len(x)))
    np.testing.assert_allclose(np.sqrt(np.diag(independent)) / alone.sd, 1.0, atol=0.1)
    # every pair recorded four times in one cluster: four times the rows, no more evidence
    copies = fit_posterior(np.repeat(x, 4, axis=0), np.repeat(y, 4))
    clustered = clustered_covariance(np.repeat(x, 4, axis=0), np.repeat(y, 4), copies, np.repeat(np.arange(len(x)), 4))
    np.testing.assert_allclose(copies.sd / alone.sd, 0.5, atol=0.03)  # the Laplace interval believes the copies
    np.testing.assert_allclose(np.sqrt(np.diag(clustered)) / copies.sd, 2.0, atol=0.2)


def test_exchanging_a_and_b_and_reordering_rows_leave_the_effects_unchanged():
    x, y = simulated(3000, 1)
    base = fit_posterior(x, y)
    exchanged = fit_posterior(-x, 1 - y)
    np.testing.assert_allclose(exchanged.mean, base.mean, atol=1e-6)
    np.testing.assert_allclose(exchanged.cov, base.cov, atol=1e-8)
    order = np.random.default_rng(2).permutation(len(y))
    np.testing.assert_allclose(fit_posterior(x[order], y[order]).mean, base.mean, atol=1e-6)


def test_ties_are_dropped_or_count_half():
    labels = np.array([0, 1, 2])
    assert label_targets(labels, "drop")[1].tolist() == [1.0, 1.0, 0.0]
    target, weight = label_targets(labels, "half")
    assert target.tolist() == [1.0, 0.0, 0.5] and weight.tolist() == [1.0, 1.0, 1.0]


def test_a_scenario_with_too_few_pairs_is_reported_not_fitted():
    x, y = simulated(600, 3)
    diffs = pd.DataFrame(x, columns=["p0", "p1", "p2", "p3"])
    scenario = pd.Series(["code"] * 580 + ["math"] * 20)
    result = dissect(diffs, {LABELS_JUDGE: (y, np.ones(600))}, scenario, 2.5, min_pairs=100)
    assert result.scenarios["math"].isna().all() and result.scenarios["code"].notna().all()
    assert result.scenario_pairs["math"] == 20


def test_scenario_rules():
    assert scenario_of("write a python function to sort a list") == "code"
    assert scenario_of("solve 3x + 2 = 11") == "math"
    assert scenario_of("Write a poem about the sea") == "writing"
    assert scenario_of("why is the sky blue?") == "reasoning"
    assert scenario_of("hello there") == "other"


def test_external_property_table_must_cover_every_pair():
    from competition.errors import InputError

    ids = pd.Series(["1", "2", "3"])
    table = pd.DataFrame({"id": ["1", "2"], "correct": [1, -1]})
    with pytest.raises(InputError, match="pair '3'"):
        external_differences(table, ids, "props.csv")
    table = pd.DataFrame({"id": ["1", "2", "3"], "correct": [1, "x", 0]})
    with pytest.raises(InputError, match="row 3, column 'correct'"):
        external_differences(table, ids, "props.csv")


@pytest.fixture
def pairs_csv(tmp_path):
    path = tmp_path / "train.csv"
    make_arena_frame(n_prompts=20, rows_per_prompt=10, seed=3).to_csv(path, index=False)
    return path


def test_cli_writes_every_table_and_figure_as_one_unit(pairs_csv, tmp_path):
    out = tmp_path / "dissection"
    assert main(["dissect", "--train", str(pairs_csv), "--out", str(out), "--min-pairs", "10"]) == 0
    for name in ("effects.csv", "effects.png", "scenarios.csv", "scenarios.png", "judges.csv", "judges.png", "manifest.json"):
        assert (out / name).exists(), name
    effects = pd.read_csv(out / "effects.csv")
    length = effects[effects["property"] == "length (tokens)"].iloc[0]
    assert length["odds_ratio_low"] > 1  # the synthetic judge prefers the longer answer
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 200 and set(summary["properties"]) <= set(PROPERTY_NAMES)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--properties", "no such property"], "unknown property"),
        (["--scenario", "math"], "too few to fit"),
        (["--properties-table", "MISSING"], "file not found"),
        (["--judges", "nowhere"], "run directory not found"),
        (["--row", "1"], "row"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pairs_csv, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / "none.csv") if e == "MISSING" else e for e in extra]
    out = tmp_path / "d"
    assert main(["dissect", "--train", str(pairs_csv), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_property_table_missing_ids_names_the_file(pairs_csv, tmp_path, capsys):
    table = tmp_path / "props.csv"
    pd.DataFrame({"id": ["100000"], "correct": [1]}).to_csv(table, index=False)
    assert main(["dissect", "--train", str(pairs_csv), "--out", str(tmp_path / "d"), "--properties-table", str(table)]) == 2
    err = capsys.readouterr().err
    assert "props.csv" in err and "has no row" in err


def test_shap_values_add_up_to_the_raw_score_of_the_pair(pairs_csv, tmp_path):
    from analysis.dissection.shap import pair_contributions
    from competition.labels import CLASS_A
    from data.loader import load_arena_csv
    from features.registry import FeatureConfig
    from models.lgbm import LGBMConfig, LGBMPreference

    frame = load_arena_csv(pairs_csv, require_labels=True)
    config = LGBMConfig(max_rounds=20, early_stopping_rounds=5, min_data_in_leaf=5, num_threads=1)
    model = LGBMPreference(config, FeatureConfig(("lengths", "markdown"), None)).fit(frame, frame["label"].to_numpy())
    per_group, per_feature, base = pair_contributions(model, frame, frame["id"].iloc[7])
    raw = model.booster_.predict(model.feature_table(frame.iloc[[7]]), raw_score=True)[0, CLASS_A]
    assert base + per_feature.sum() == pytest.approx(raw, abs=1e-9)
    assert per_group.sum() == pytest.approx(per_feature.sum()) and set(per_group.index) <= {"lengths", "markdown"}


def test_another_judges_label_file_is_a_judge_and_equal_labels_give_equal_effects(pairs_csv, tmp_path):
    frame = pd.read_csv(pairs_csv)
    same = tmp_path / "same_judge.csv"
    frame[["id", "winner_model_a", "winner_model_b", "winner_tie"]].to_csv(same, index=False)
    flipped = frame.assign(winner_model_a=frame["winner_model_b"], winner_model_b=frame["winner_model_a"])
    contrarian = tmp_path / "contrarian.csv"
    flipped[["id", "winner_model_a", "winner_model_b", "winner_tie"]].to_csv(contrarian, index=False)
    out = tmp_path / "d"
    argv = ["dissect", "--train", str(pairs_csv), "--out", str(out), "--min-pairs", "10", "--judges", str(same), str(contrarian)]
    assert main(argv) == 0
    effects = pd.read_csv(out / "effects.csv").pivot(index="property", columns="judge", values="effect")
    np.testing.assert_allclose(effects["same_judge"], effects["labels"], atol=1e-9)
    np.testing.assert_allclose(effects["contrarian"], -effects["labels"], atol=1e-6)
    assert pd.read_csv(out / "judges.csv", index_col=0).loc["labels", "contrarian"] == pytest.approx(-1.0)
