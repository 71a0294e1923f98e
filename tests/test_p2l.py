"""P2L on simulated battles whose coefficients depend on the prompt: the head and the estimator recover that
dependence; the head's objective is the tie model's likelihood and its gradient matches finite differences;
relabelling models changes nothing; aggregation and the jackknife give known answers. The simulation helpers are imported by the other P2L test files."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from competition.labels import LABEL_COLUMNS
from models.bradley_terry import three_way
from models.p2l.estimator import P2LPreference
from models.p2l.settings import EncoderConfig, HeadConfig, TuneConfig

TASKS = ("sorts a list", "parses a date", "reverses a string", "merges two dicts", "counts words", "reads a CSV", "finds primes")
TOPICS = ("the sea", "autumn leaves", "a lost cat", "the moon", "city rain", "an old friend", "spring flowers")
# coefficient on code prompts, on prose prompts (logits)
STRENGTH = {"coder": (1.5, -1.5), "poet": (-1.5, 1.5), "steady": (0.0, 0.0), "weak": (-1.0, -1.0)}
LOG_TIE = np.log(0.5)


def prompt_of(i: int) -> tuple[str, bool]:
    code = i % 2 == 0
    text = (
        f"Write a Python function that {TASKS[i % 7]} (variant {i})."
        if code
        else f"Write a short poem about {TOPICS[i % 7]} ({i})."
    )
    return text, code


def simulated_battles(n_prompts: int = 40, repeats: int = 2, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Every pair of models `repeats` times per prompt, labels drawn from Davidson with the prompt's coefficients."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(start, start + n_prompts):
        text, code = prompt_of(i)
        for a, b in combinations(STRENGTH, 2):
            for _ in range(repeats):
                if rng.random() < 0.5:
                    a, b = b, a
                d = STRENGTH[a][0 if code else 1] - STRENGTH[b][0 if code else 1]
                label = int(rng.choice(3, p=three_way(np.array([d]), LOG_TIE, "davidson", 0.0)[0]))
                rows.append({"id": f"r{len(rows)}-{seed}", "prompt": [text], "model_a": a, "model_b": b, "label": label})
                rows[-1]["question_id"] = f"q{i}"
    frame = pd.DataFrame(rows)
    frame["response_a"] = [["answer"]] * len(frame)
    frame["response_b"] = [["answer"]] * len(frame)
    return frame


def write_battles_csv(path, frame: pd.DataFrame) -> str:
    out = frame[["id", "model_a", "model_b", "question_id"]].copy()
    for column in ("prompt", "response_a", "response_b"):
        out[column] = frame[column].map(json.dumps)
    for k, column in enumerate(LABEL_COLUMNS):
        out[column] = (frame["label"] == k).astype(int)
    out.to_csv(path, index=False)
    return str(path)


def write_grades_csv(path, frame: pd.DataFrame) -> str:
    """Each model's grade on each prompt: its true coefficient, shifted onto 1-10."""
    rows = []
    for qid in frame["question_id"].unique():
        code = int(qid[1:]) % 2 == 0
        rows += [{"question_id": qid, "model": m, "grade": 5.5 + 2 * s[0 if code else 1]} for m, s in STRENGTH.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


# -- the head alone: a known feature, a known dependence


def test_the_head_recovers_a_coefficient_that_moves_with_a_prompt_feature():
    from models.p2l.head import Battles, LinearHead, fit_head, global_start

    rng = np.random.default_rng(1)
    n_prompts, n_models = 300, 4
    x = rng.normal(size=(n_prompts, 1))
    slope = np.array([1.0, -1.0, 0.0, 0.0])  # model 0 gains with x, model 1 loses, 2 and 3 do not care
    base = np.array([0.3, 0.3, 0.0, -0.6])
    prompt = np.repeat(np.arange(n_prompts), 12)
    a = rng.integers(0, n_models, len(prompt))
    b = (a + rng.integers(1, n_models, len(prompt))) % n_models
    theta = base + x * slope
    probs = three_way(theta[prompt, a] - theta[prompt, b], np.full(len(prompt), LOG_TIE), "davidson", 0.0)
    outcome = np.array([1.0, 0.0, 0.5])[[rng.choice(3, p=p) for p in probs]]
    battles = Battles(prompt, a, b, outcome)
    start = global_start(battles, n_models, 1, "davidson")
    head = fit_head(x, battles, n_models, np.array([1e-4]), np.array([1e-3]), "davidson", start, 2000)
    assert isinstance(head, LinearHead)
    fitted_slope = head.weights[0] - head.weights[0].mean()
    assert np.allclose(fitted_slope, slope - slope.mean(), atol=0.2)
    assert np.exp(head.tie_bias) == pytest.approx(0.5, rel=0.25)
    strong = fit_head(x, battles, n_models, np.array([1e3]), np.array([1e3]), "davidson", start, 2000)
    assert np.abs(strong.weights).max() < 0.01  # a heavy penalty leaves the global leaderboard
    # ... and only the prompt weights are penalised: θ₀ stays the global leaderboard, not shrunk towards 0
    assert np.allclose(strong.bias - strong.bias.mean(), start.bias - start.bias.mean(), atol=0.01)
    assert np.ptp(strong.bias) > 0.5


def head_problem(seed: int):
    """A small random head problem with every outcome kind, and a random point to evaluate it at."""
    from models.p2l.head import Battles

    rng = np.random.default_rng(seed)
    n_prompts, n_models, dims = 15, 4, 3
    X = rng.normal(size=(n_prompts, dims))
    prompt = rng.integers(0, n_prompts, 120)
    a = rng.integers(0, n_models, len(prompt))
    b = (a + rng.integers(1, n_models, len(prompt))) % n_models
    battles = Battles(prompt, a, b, rng.choice([1.0, 0.0, 0.5], len(prompt)))
    z = rng.normal(0, 0.5, n_models + 1 + dims * n_models + dims)
    return X, battles, n_models, rng.uniform(0.1, 2.0, dims), rng.uniform(0.1, 2.0, dims), z


def loss_from_the_definitions(z, X, battles, n_models, penalty, tie_penalty, tie_model) -> float:
    """The head's objective written out from the tie models' probabilities (not from models/bradley_terry.py)."""
    dims = X.shape[1]
    bias, tie_bias = z[:n_models], z[n_models]
    weights = z[n_models + 1 : n_models + 1 + dims * n_models].reshape(dims, n_models)
    tie_weights = z[n_models + 1 + dims * n_models :]
    theta = bias + X @ weights
    t = tie_bias + X @ tie_weights
    d = theta[battles.prompt, battles.a] - theta[battles.prompt, battles.b]
    s = np.exp(t[battles.prompt])
    if tie_model == "davidson":  # P(a), P(b), P(tie) proportional to e^{d/2}, e^{-d/2}, ν
        norm = np.exp(d / 2) + np.exp(-d / 2) + s
        p_a, p_b, p_tie = np.exp(d / 2) / norm, np.exp(-d / 2) / norm, s / norm
    else:  # Rao-Kupper: P(a) = σ(d − η), P(b) = σ(−d − η)
        p_a, p_b = 1 / (1 + np.exp(s - d)), 1 / (1 + np.exp(s + d))
        p_tie = 1 - p_a - p_b
    p = np.where(battles.outcome == 1.0, p_a, np.where(battles.outcome == 0.0, p_b, p_tie))
    ridge = 0.5 * np.sum(penalty[:, None] * weights**2) + 0.5 * np.sum(tie_penalty * tie_weights**2)
    return -np.mean(np.log(p)) + ridge


@pytest.mark.parametrize("tie_model", ["davidson", "rao-kupper"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_heads_objective_is_the_tie_models_likelihood_and_its_gradient_matches_finite_differences(tie_model, seed):
    from models.p2l.head import head_objective

    X, battles, n_models, penalty, tie_penalty, z = head_problem(seed)
    args = (X, battles, n_models, penalty, tie_penalty, tie_model)
    loss, grad = head_objective(z, *args)
    assert loss == pytest.approx(loss_from_the_definitions(z, *args), rel=1e-10)
    step = 1e-6
    numeric = np.array(
        [(head_objective(z + step * e, *args)[0] - head_objective(z - step * e, *args)[0]) / (2 * step) for e in np.eye(len(z))]
    )
    assert np.allclose(grad, numeric, rtol=1e-5, atol=1e-8)


# -- the estimator: prompt text in, coefficients out


def small_head(**changes) -> HeadConfig:
    return HeadConfig(**({"l2_embedding": (0.5,), "l2_features": (0.05,)} | changes))


def fitted(frame: pd.DataFrame, cache_dir, head: HeadConfig | None = None) -> P2LPreference:
    encoder = EncoderConfig(cache_dir=str(cache_dir))
    return P2LPreference(encoder, head or small_head(), TuneConfig(num_threads=1)).fit(frame, frame["label"].to_numpy())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("p2l_cache")


@pytest.fixture(scope="module")
def train_frame():
    return simulated_battles(n_prompts=40, repeats=2, seed=0)


@pytest.fixture(scope="module")
def model(train_frame, cache_dir):
    return fitted(train_frame, cache_dir)


def test_the_estimator_recovers_which_model_is_good_at_which_kind_of_prompt(model, cache_dir):
    held_out = [prompt_of(i) for i in range(100, 110)]  # prompts never seen in training
    theta, _ = model.coefficients([[text] for text, _ in held_out])
    coder, poet = model.models_.index("coder"), model.models_.index("poet")
    for (_, code), row in zip(held_out, theta, strict=True):
        assert (row[coder] > row[poet]) == code
    assert np.allclose(theta.sum(axis=1), 0.0, atol=1e-9)  # centred per prompt


def test_the_estimator_beats_the_global_leaderboard_on_new_prompts(model):
    from competition.metric import log_loss
    from models.names_bradley_terry import NamesBradleyTerry

    test = simulated_battles(n_prompts=20, repeats=2, seed=5, start=200)
    y = test["label"].to_numpy()
    train = simulated_battles(n_prompts=40, repeats=2, seed=0)
    names_only = NamesBradleyTerry("davidson").fit(train, train["label"].to_numpy())
    assert log_loss(y, model.predict_proba(test)) < log_loss(y, names_only.predict_proba(test)) - 0.1


def test_relabelling_the_models_permutes_the_coefficients(train_frame, model, cache_dir):
    rename = {"coder": "zz-coder", "poet": "aa-poet", "steady": "mm-steady", "weak": "bb-weak"}  # another sorted order
    renamed = train_frame.assign(model_a=train_frame["model_a"].map(rename), model_b=train_frame["model_b"].map(rename))
    other = fitted(renamed, cache_dir)
    assert other.models_ != [rename[m] for m in model.models_]
    prompts = [[prompt_of(i)[0]] for i in range(100, 104)]
    theta, tie = model.coefficients(prompts)
    theta_other, tie_other = other.coefficients(prompts)
    order = [other.models_.index(rename[m]) for m in model.models_]
    assert np.allclose(theta_other[:, order], theta, atol=1e-5)
    assert np.allclose(tie_other, tie, atol=1e-5)
    assert np.allclose(other.predict_proba(renamed), model.predict_proba(train_frame), atol=1e-6)


def test_the_estimators_probabilities_are_its_coefficients_through_the_tie_model(train_frame, model):
    """predict_proba reads each battle's own prompt, models and tie parameter: a battle's probabilities are the
    tie model's at that prompt's coefficient difference (swapping A and B is covered by the likelihood test: the
    model is antisymmetric by construction, so a swap test could not fail)."""
    rows = train_frame.iloc[[0, 7, 30, 101, 250]]
    theta, tie = model.coefficients([list(p) for p in rows["prompt"]])
    a = [model.models_.index(m) for m in rows["model_a"]]
    b = [model.models_.index(m) for m in rows["model_b"]]
    d = theta[np.arange(len(rows)), a] - theta[np.arange(len(rows)), b]
    expected = np.array([three_way(np.array([di]), ti, "davidson", 0.0)[0] for di, ti in zip(d, tie, strict=True)])
    assert np.allclose(model.predict_proba(rows), expected, atol=1e-12)
    assert len(set(np.round(tie, 6))) > 1 or len(set(np.round(d, 6))) > 1  # the rows differ, so the lookup matters


def test_a_model_never_seen_meets_any_other_as_an_even_match(model):
    frame = pd.DataFrame(
        {"prompt": [[prompt_of(100)[0]]] * 2, "model_a": ["newcomer", "coder"], "model_b": ["coder", "newcomer"]}
    )
    probs = model.predict_proba(frame)
    assert probs[0, 0] == pytest.approx(probs[0, 1]) and np.allclose(probs[0], probs[1])


def test_a_saved_model_predicts_the_same_after_loading(model, train_frame, tmp_path):
    from models.registry import load_model, save_model

    save_model(model, tmp_path / "model")
    again = load_model(tmp_path / "model")
    assert isinstance(again, P2LPreference)
    assert np.array_equal(again.predict_proba(train_frame), model.predict_proba(train_frame))


def test_inner_folds_choose_among_candidate_penalties(train_frame, cache_dir):
    chosen = fitted(train_frame, cache_dir, small_head(l2_embedding=(0.01, 100.0), inner_folds=3))
    assert chosen.fit_facts_["l2_embedding"] in (0.01, 100.0) and np.isfinite(chosen.fit_facts_["inner_log_loss"])


# -- uses: known answers


def test_the_jackknife_over_folds():
    from analysis.p2l import jackknife

    mean, error = jackknife(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
    assert np.allclose(mean, [2.0, 0.0])
    assert np.allclose(error, [np.sqrt(2 / 3 * 2.0), 0.0])  # (F - 1) / F * sum of squared deviations


def test_aggregating_identical_prompts_gives_their_own_leaderboard_and_mixtures_are_not_mean_coefficients():
    from analysis.p2l import aggregate_ratings

    theta = np.array([1.0, 0.2, -0.4, -0.8])
    ratings, _ = aggregate_ratings(np.tile(theta, (3, 1)), np.full(3, LOG_TIE), "davidson")
    assert np.allclose(ratings, theta - theta.mean(), atol=1e-4)
    # one prompt where the models differ a lot, one where they are nearly equal and reversed: the mixture's win
    # rates are far less lopsided than its mean coefficients say
    mixture = np.array([[3.0, 0.0, -3.0], [-0.3, 0.0, 0.3]])
    ratings, _ = aggregate_ratings(mixture, np.full(2, LOG_TIE), "davidson")
    mean = mixture.mean(axis=0)
    assert np.argsort(ratings).tolist() == np.argsort(mean).tolist()
    assert ratings[0] - ratings[1] < 0.8 * (mean[0] - mean[1])


def test_two_prompt_groups_with_one_text_each_get_their_coefficients(model, train_frame, tmp_path):
    from analysis.p2l import out_of_fold_coefficients
    from models.registry import save_model

    save_model(model, tmp_path / "model")
    rows = train_frame.drop_duplicates("question_id").head(4).copy()
    rows = pd.concat([rows, rows.iloc[[0]].assign(question_id="copy-of-first")])  # another id, the same text
    rows["group"] = rows["question_id"]
    table = out_of_fold_coefficients([tmp_path / "model"], rows, np.zeros(len(rows), dtype=int))
    wide = table.pivot(index="group", columns="model", values="coefficient")
    assert len(wide) == 5
    assert np.allclose(wide.loc["copy-of-first"], wide.loc[rows["question_id"].iloc[0]])


def test_intervals_from_five_fold_models_use_student_t_at_four_degrees_of_freedom():
    from analysis.p2l import interval_half_width

    # the variance comes from five numbers: the 95 % quantile is t(4) = 2.776, not the normal 1.960
    assert interval_half_width(np.array([1.0]), folds=5, level=0.95)[0] == pytest.approx(2.7764, abs=1e-4)
    assert interval_half_width(np.array([1.0]), folds=41, level=0.95)[0] == pytest.approx(2.0211, abs=1e-4)
