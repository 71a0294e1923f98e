"""`dissect`: effects recovered from simulated pairs with honest intervals, invariant to the A/B exchange and to
row order; one-line errors for bad input; LightGBM SHAP values that add up to the model's raw score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.dissection.analysis import LABELS_JUDGE, dissect, shared_rows
from analysis.dissection.bayes import (
    Prior,
    clustered_covariance,
    fit_posterior,
    negative_log_posterior,
    posterior,
    posterior_hessian,
    row_scores,
    sample_posterior,
)
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


def test_clustered_covariance_with_one_row_per_cluster_is_the_laplace_covariance_in_a_well_specified_model():
    # a 1-D well-specified case with a prior as strong as the data: the meat is the data's information I plus the
    # prior's precision P, the bread H = I + P, so the sandwich is H⁻¹, the tested Laplace fit's variance
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 0.05, size=(3000, 1))
    y = (rng.random(3000) < 1 / (1 + np.exp(-1.5 * x[:, 0]))).astype(float)
    fitted = fit_posterior(x, y, prior_sd=0.8)
    sandwich = clustered_covariance(x, y, fitted, np.arange(3000), prior_sd=0.8)
    assert sandwich[0, 0] == pytest.approx(fitted.cov[0, 0], rel=0.05)


def test_a_property_the_data_say_nothing_about_keeps_the_priors_width_in_the_clustered_covariance():
    x, y = simulated(2000, 3)
    x = np.column_stack([x, np.zeros(len(x))])  # a property that never differs within a pair
    fitted = fit_posterior(x, y, prior_sd=2.5)
    clustered = clustered_covariance(x, y, fitted, np.arange(len(x)) // 10, prior_sd=2.5)
    assert np.sqrt(clustered[-1, -1]) == pytest.approx(2.5, rel=1e-9)
    assert np.sqrt(np.diag(clustered))[:-1].max() < 0.5  # the data decide the others


def nearly_gaussian_1d(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One property with small differences: |x·β| stays small where the posterior lives, so the log likelihood is
    close to quadratic there; fractional targets and uneven weights as the judges give them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.05, size=(1500, 1))
    target = (rng.random(1500) < 1 / (1 + np.exp(-1.5 * x[:, 0]))).astype(float)
    target[::7] = 0.5
    return x, target, rng.uniform(0.5, 1.5, size=1500)


def exact_posterior_1d(x, target, weight, log_prior) -> tuple[float, float, callable]:
    """(mean, sd, cdf) of the one-effect posterior by numerical integration of likelihood × prior."""
    from scipy import integrate

    def log_unnormalised(b: float) -> float:
        z = x[:, 0] * b
        return float(np.sum(weight * (target * z - np.logaddexp(0.0, z)))) + log_prior(b)

    peak = max(log_unnormalised(b) for b in np.linspace(-8, 8, 321))
    density = lambda b: np.exp(log_unnormalised(b) - peak)  # noqa: E731
    # the posterior sd is under 1: ±8 holds all its mass; the break point at 0 is the Laplace prior's kink
    mass = integrate.quad(density, -8, 8, points=[0.0], limit=200)[0]
    mean = integrate.quad(lambda b: b * density(b), -8, 8, points=[0.0], limit=200)[0] / mass
    var = integrate.quad(lambda b: (b - mean) ** 2 * density(b), -8, 8, points=[0.0], limit=200)[0] / mass
    return mean, np.sqrt(var), lambda q: integrate.quad(density, -8, q, points=[0.0] if q > 0 else None, limit=200)[0] / mass


def test_the_laplace_approximation_matches_the_exact_posterior_where_the_likelihood_is_nearly_gaussian():
    x, target, weight = nearly_gaussian_1d()
    prior_sd = 0.8  # the prior weighs about as much as the data: its precision, not its variance, must enter
    mean, sd, _ = exact_posterior_1d(x, target, weight, lambda b: -0.5 * b**2 / prior_sd**2)
    fitted = fit_posterior(x, target, weight, prior_sd=prior_sd)
    assert fitted.mean[0] == pytest.approx(mean, rel=0.01) and fitted.sd[0] == pytest.approx(sd, rel=0.01)


def test_the_laplace_prior_is_sampled_to_the_exact_posterior_with_its_kink_at_zero():
    x, target, weight = nearly_gaussian_1d()
    scale = 0.3  # pulls the effect towards 0, where the log prior has its kink: the posterior is skewed there
    mean, sd, cdf = exact_posterior_1d(x, target, weight, lambda b: -abs(b) / scale)
    sampled = sample_posterior(x, target, weight, Prior("laplace", scale), steps=4000, seed=1)
    assert abs(sampled.mean[0] - mean) < 0.05 * sd and sampled.sd[0] == pytest.approx(sd, rel=0.05)
    # the interval's ends by quantiles of the draws: a normal prior of the same sd puts the upper one at 0.964
    low, high = sampled.table()[["effect_low", "effect_high"]].iloc[0]
    assert cdf(low) == pytest.approx(0.025, abs=0.008) and cdf(high) == pytest.approx(0.975, abs=0.008)


@pytest.mark.parametrize("prior", [Prior("normal", 0.7), Prior("laplace", 0.3)], ids=["normal", "laplace"])
def test_an_effect_the_data_say_nothing_about_keeps_its_prior(prior):
    x, y = simulated(2000, 4)
    x[:, 2] = 0.0  # a property that never differs within a pair
    fitted = posterior(x, y, None, prior, mcmc_steps=3000)
    assert abs(fitted.mean[2]) < 0.1 * prior.sd
    # the normal prior's Laplace approximation is exact there; the sampler is within its Monte Carlo error
    assert fitted.sd[2] == pytest.approx(prior.sd, rel=1e-9 if prior.family == "normal" else 0.08)
    assert abs(fitted.mean[0] - TRUE_EFFECTS[0]) < 0.2  # the data still speak where they do


def test_hand_written_gradients_match_finite_differences():
    from scipy.optimize import approx_fprime, check_grad

    rng = np.random.default_rng(3)
    x, weight = rng.normal(size=(300, 4)), rng.uniform(0.2, 2.0, size=300)
    target = rng.choice([0.0, 0.5, 1.0, 0.3], size=300)  # fractional targets: a model judge's
    precision = 1 / 0.7**2
    for beta in (np.zeros(4), rng.normal(size=4)):

        def loss(b):
            return negative_log_posterior(b, x, target, weight, precision)[0]

        def gradient(b):
            return negative_log_posterior(b, x, target, weight, precision)[1]

        assert check_grad(loss, gradient, beta, epsilon=1e-6) < 1e-4 * max(1.0, np.abs(gradient(beta)).max())
        numeric = np.array([approx_fprime(beta, lambda b, j=j: gradient(b)[j], 1e-6) for j in range(4)])
        np.testing.assert_allclose(posterior_hessian(beta, x, weight, precision), numeric, rtol=1e-4, atol=1e-4)
        per_row = lambda b: weight * (np.logaddexp(0.0, x @ b) - target * (x @ b))  # noqa: E731
        step = 1e-6 * np.eye(4)
        numeric_rows = np.column_stack([(per_row(beta + e) - per_row(beta - e)) / 2e-6 for e in step])
        np.testing.assert_allclose(row_scores(beta, x, target, weight), numeric_rows, rtol=1e-5, atol=1e-7)


def test_row_order_leaves_the_effects_unchanged():
    x, y = simulated(3000, 1)
    order = np.random.default_rng(2).permutation(len(y))
    np.testing.assert_allclose(fit_posterior(x[order], y[order]).mean, fit_posterior(x, y).mean, atol=1e-6)


def test_ties_are_dropped_or_count_half():
    labels = np.array([0, 1, 2])
    assert label_targets(labels, "drop")[1].tolist() == [1.0, 1.0, 0.0]
    target, weight = label_targets(labels, "half")
    assert target.tolist() == [1.0, 0.0, 0.5] and weight.tolist() == [1.0, 1.0, 1.0]


def test_a_scenario_with_too_few_pairs_is_reported_not_fitted():
    x, y = simulated(600, 3)
    diffs = pd.DataFrame(x, columns=["p0", "p1", "p2", "p3"])
    scenario = pd.Series(["code"] * 580 + ["math"] * 20)
    result = dissect(diffs, {LABELS_JUDGE: (y, np.ones(600))}, scenario, Prior("normal", 2.5), min_pairs=100)
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


def test_every_judge_is_fitted_on_the_rows_all_judges_keep():
    x, y = simulated(800, 6)
    labels = np.where(np.arange(800) % 5 == 0, 2, np.where(y == 1, 0, 1))  # every fifth pair a tie
    target, weight = label_targets(labels, "drop")
    # a model judge that agrees with the labels where they decide, leans to A on their ties, and skips some rows
    model_target = np.where(labels == 2, 0.95, target)
    model_weight = np.where(np.arange(800) % 7 == 0, 0.0, 1.0)
    diffs = pd.DataFrame(x, columns=["p0", "p1", "p2", "p3"])
    judges = {LABELS_JUDGE: (target, weight), "model": (model_target, model_weight)}
    result = dissect(diffs, judges, pd.Series(["code"] * 800), Prior("normal", 2.5), min_pairs=100)
    effects = result.effects.pivot(index="property", columns="judge", values="effect")
    np.testing.assert_allclose(effects["model"], effects[LABELS_JUDGE], atol=1e-9)
    both = (labels != 2) & (model_weight > 0)
    assert set(result.effects["pairs"]) == {float(both.sum())}
    _, rows = shared_rows(judges)
    assert rows.loc[LABELS_JUDGE].tolist() == [640, 160, 640 - both.sum()]
    assert rows.loc["model"].tolist() == [model_weight.sum(), 800 - model_weight.sum(), model_weight.sum() - both.sum()]


def test_the_cli_fits_a_label_file_judge_on_the_same_rows_and_says_what_it_dropped(pairs_csv, tmp_path):
    frame = pd.read_csv(pairs_csv)
    tie = frame["winner_tie"] == 1
    # the same judge, except that it calls the labels' ties for A and leaves the first 20 pairs unlabelled
    other = frame.assign(winner_model_a=frame["winner_model_a"] | tie.astype(int), winner_tie=0).iloc[20:]
    path = tmp_path / "other_judge.csv"
    other[["id", "winner_model_a", "winner_model_b", "winner_tie"]].to_csv(path, index=False)
    out = tmp_path / "d"
    assert main(["dissect", "--train", str(pairs_csv), "--out", str(out), "--min-pairs", "10", "--judges", str(path)]) == 0
    effects = pd.read_csv(out / "effects.csv").pivot(index="property", columns="judge", values="effect")
    np.testing.assert_allclose(effects["other_judge"], effects["labels"], atol=1e-9)
    rows = json.loads((out / "summary.json").read_text())["rows"]["per_judge"]
    decided_unlabelled = int((~tie[:20]).sum())
    assert rows["labels"] == {
        "keeps": int((~tie).sum()),
        "leaves_out": int(tie.sum()),
        "why": "its ties (--ties drop)",
        "dropped_for_others": decided_unlabelled,
    }
    assert rows["other_judge"]["dropped_for_others"] == int(tie[20:].sum()) and rows["other_judge"]["leaves_out"] == 20


@pytest.mark.parametrize(("flags", "stated"), [([], "N(0, 2.5²)"), (["--prior", "laplace"], "Laplace(0, 0.1)")])
def test_the_run_states_the_prior_it_used(pairs_csv, tmp_path, capsys, flags, stated):
    out = tmp_path / "d"
    argv = ["dissect", "--train", str(pairs_csv), "--out", str(out), "--min-pairs", "1000", "--set", "dissect.mcmc_steps=200"]
    assert main([*argv, *flags]) == 0
    assert stated in json.loads((out / "summary.json").read_text())["prior"] and stated in capsys.readouterr().out


def test_the_laplace_prior_scale_reaches_the_fit(pairs_csv, tmp_path):
    lengths = {}
    for scale in (0.005, 1.0):
        out = tmp_path / f"d{scale}"
        argv = ["dissect", "--train", str(pairs_csv), "--out", str(out), "--prior", "laplace", "--min-pairs", "1000"]
        assert main([*argv, "--set", f"dissect.laplace_scale={scale}", "--set", "dissect.mcmc_steps=300"]) == 0
        effects = pd.read_csv(out / "effects.csv").set_index("property")
        lengths[scale] = effects.loc["length (tokens)", "effect"]
    assert abs(lengths[0.005]) < 0.05 < lengths[1.0]  # a tight prior holds the effect near 0; a loose one lets it be
