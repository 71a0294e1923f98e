"""What a fitted P2L run is for: a leaderboard for a new prompt, an aggregate leaderboard for a set of prompts,
and per-prompt win rates for routing.

Every fold model of the run ranks the prompt; the point estimate is their mean and the interval is the
delete-a-group jackknife over the folds: var = (F - 1) / F · Σ_f (θ_f - θ̄)², the folds being F disjoint
groups of prompts each model was trained without, with Student's t quantile at F - 1 degrees of freedom (five
folds: 2.78 at 95 %, not the normal 1.96: the variance is estimated from five numbers). Its coverage of the
true coefficients is checked in simulation (analysis/p2l_coverage.py). That interval is about the head's
training prompts (another draw of prompts would move the coefficients that much), not about how the models
would do on this prompt.

Aggregation over a prompt distribution follows P2L: average the per-prompt three-way probabilities of every
pair over the prompts, then fit one Bradley-Terry model to the averaged matrix (the leaderboard whose
predictions are closest, in expected log likelihood, to the per-prompt leaderboards). Averaging coefficients
instead is cheaper but wrong when prompts disagree in scale: a prompt where models differ a lot would
dominate, and the mean of coefficients does not predict the win rates of the mixture. Both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm, spearmanr
from scipy.stats import t as student_t

from analysis.leaderboard.prompt import names_only_out_of_fold, per_prompt_rank_agreement
from competition.crossfit import MODEL_DIR
from competition.errors import InputError
from competition.metric import log_loss, score_report
from competition.rundir import RunKind
from competition.runs import read_run, run_facts, run_file
from models.bradley_terry import ELO_PER_LOGIT, BradleyTerry, aggregate, three_way
from models.p2l.estimator import P2LPreference, unique_prompts
from models.registry import load_model

# files a cv run of the p2l family adds (stages/families.py writes them; this module reads them)
COEFFICIENTS_FILE = "coefficients.parquet"
SUMMARY_FILE = "p2l_summary.json"
FOLDS_DIR = "folds"


@dataclass
class FittedP2L:
    run_dir: Path
    estimators: list[P2LPreference]
    tie_model: str

    @property
    def models(self) -> list[str]:
        """Models every fold model knows (a model some fold never saw cannot be ranked with intervals)."""
        known = set(self.estimators[0].models_)
        for estimator in self.estimators[1:]:
            known &= set(estimator.models_)
        return sorted(known)


def p2l_manifest(run_dir: str | Path) -> dict:
    """The checked manifest of a cv run of the P2L family."""
    manifest = read_run(run_dir, (RunKind.CV,))
    if run_facts(manifest).get("family") != "p2l":
        raise InputError(f"this is a cv run of the {run_facts(manifest).get('family')!r} family, not of 'p2l'", run_dir)
    return manifest


def load_p2l_run(run_dir: str | Path) -> FittedP2L:
    """The fold models of a finished P2L cv run (manifests checked; a torn run is one line)."""
    run_dir = Path(run_dir)
    folds = run_facts(p2l_manifest(run_dir)).get("folds", [])
    if not folds:
        raise InputError("this P2L run names no finished fold", run_dir)
    estimators = [load_model(run_dir / FOLDS_DIR / f"fold{int(f)}" / MODEL_DIR) for f in folds]
    return FittedP2L(run_dir, estimators, estimators[0].head.tie_model)


def out_of_fold_table(run_dir: str | Path) -> pd.DataFrame:
    """The run's coefficient table (group, fold, model, coefficient, tie), after checking the run."""
    return pd.read_parquet(run_file(run_dir, COEFFICIENTS_FILE, p2l_manifest(run_dir)))


def chosen_models(fitted: FittedP2L, models: tuple[str, ...] | list[str]) -> list[str]:
    if not models:
        return fitted.models
    unknown = [m for m in models if m not in fitted.models]
    if unknown:
        raise InputError(f"model {unknown[0]!r} is not in this P2L run (known: {', '.join(fitted.models)})", fitted.run_dir)
    return list(models)


def fold_coefficients(fitted: FittedP2L, prompts: list[list[str | None]], models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(folds, prompts, models) coefficients centred over `models`, and (folds, prompts) raw tie parameters."""
    thetas, ties = [], []
    for estimator in fitted.estimators:
        theta, tie = estimator.coefficients(prompts)
        theta = theta[:, [estimator.models_.index(m) for m in models]]
        thetas.append(theta - theta.mean(axis=1, keepdims=True))
        ties.append(tie)
    return np.stack(thetas), np.stack(ties)


def jackknife(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis (the folds) and the delete-a-group jackknife standard error."""
    folds = len(values)
    mean = values.mean(axis=0)
    return mean, np.sqrt((folds - 1) / folds * ((values - mean) ** 2).sum(axis=0))


def pair_probabilities(theta: np.ndarray, tie: float, tie_model: str) -> np.ndarray:
    """(M, M, 3): P(row wins), P(column wins), P(tie) for every ordered pair of one prompt's coefficients."""
    d = theta[:, None] - theta[None, :]
    return three_way(d.ravel(), np.full(d.size, tie), tie_model, 0.0).reshape(len(theta), len(theta), 3)


def win_matrix(pairs: np.ndarray) -> np.ndarray:
    """P(row beats column), ties counted half, from (M, M, 3) pair probabilities; 0.5 on the diagonal."""
    wins = pairs[..., 0] + 0.5 * pairs[..., 2]
    np.fill_diagonal(wins, 0.5)
    return wins


def interval_half_width(errors: np.ndarray, folds: int, level: float, quantile: str = "t") -> np.ndarray:
    """Half-width of the `level` interval from jackknife errors over `folds` fold models: Student's t at folds - 1
    degrees of freedom ("normal" gives the z interval, too narrow with few folds; kept for comparison)."""
    if quantile == "normal":
        return norm.ppf(0.5 + level / 2) * errors
    return student_t.ppf(0.5 + level / 2, df=max(1, folds - 1)) * errors


def board(models: list[str], points: np.ndarray, errors: np.ndarray, level: float, wins: np.ndarray, folds: int) -> pd.DataFrame:
    """The leaderboard table: coefficients on the rating scale with intervals, arena's rank and mean win rate."""
    half = interval_half_width(errors, folds, level)
    lower, upper = points - half, points + half
    table = pd.DataFrame(
        {
            "model": models,
            "score": 1000.0 + ELO_PER_LOGIT * points,
            "lower": 1000.0 + ELO_PER_LOGIT * lower,
            "upper": 1000.0 + ELO_PER_LOGIT * upper,
            "rank_ub": [1 + int(np.sum(lower > upper[i])) for i in range(len(models))],
            "mean_win_prob": (wins.sum(axis=1) - 0.5) / max(1, len(models) - 1),
        }
    )
    return table.sort_values("score", ascending=False, ignore_index=True)


def prompt_leaderboard(fitted: FittedP2L, turns: list[str | None], models: list[str], level: float):
    """(table, win matrix in the table's order) for one prompt: fold-mean coefficients with jackknife intervals."""
    theta, tie = fold_coefficients(fitted, [turns], models)
    points, errors = jackknife(theta[:, 0])
    wins = win_matrix(pair_probabilities(points, float(tie[:, 0].mean()), fitted.tie_model))
    table = board(models, points, errors, level, wins, len(fitted.estimators))
    order = [models.index(m) for m in table["model"]]
    return table, wins[np.ix_(order, order)]


def _aggregate_fit(theta: np.ndarray, tie: np.ndarray, tie_model: str) -> tuple[BradleyTerry, np.ndarray]:
    """(Bradley-Terry fit, prompt-averaged (M, M, 3) matrix) for per-prompt coefficients `theta` (prompts, M)."""
    m = theta.shape[1]
    mean_pairs = np.mean([pair_probabilities(t, float(s), tie_model) for t, s in zip(theta, tie, strict=True)], axis=0)
    i, j = np.array(list(combinations(range(m), 2))).T
    a, b = np.concatenate([i, i, i]), np.concatenate([j, j, j])
    weight = np.concatenate([mean_pairs[i, j, 0], mean_pairs[i, j, 1], mean_pairs[i, j, 2]])
    return BradleyTerry(m, tie_model).fit(a, b, np.repeat([1.0, 0.0, 0.5], len(i)), weight), mean_pairs


def aggregate_ratings(theta: np.ndarray, tie: np.ndarray, tie_model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ratings fitted to the prompt-averaged three-way matrix, averaged three-way matrix) of one fold model."""
    fit, mean_pairs = _aggregate_fit(theta, tie, tie_model)
    return fit.ratings_, mean_pairs


def aggregate_leaderboard(fitted: FittedP2L, prompts: list[list[str | None]], models: list[str], level: float):
    """(table, win matrix) for a set of prompts: per fold model, Bradley-Terry on the prompt-averaged pairs; the
    jackknife over fold models gives the intervals. `mean_coefficient` is the plain average, for comparison."""
    theta, tie = fold_coefficients(fitted, prompts, models)
    fits = [aggregate_ratings(theta[f], tie[f], fitted.tie_model) for f in range(len(theta))]
    points, errors = jackknife(np.stack([ratings for ratings, _ in fits]))
    mean_pairs = np.mean([pairs for _, pairs in fits], axis=0)
    table = board(models, points, errors, level, win_matrix(mean_pairs), len(fitted.estimators))
    averaged = dict(zip(models, 1000.0 + ELO_PER_LOGIT * theta.mean(axis=(0, 1)), strict=True))
    table["mean_coefficient"] = table["model"].map(averaged)
    order = [models.index(m) for m in table["model"]]
    return table, win_matrix(mean_pairs)[np.ix_(order, order)]


def field_win_rates(theta: np.ndarray, tie: np.ndarray, tie_model: str, opponent: np.ndarray | None = None) -> np.ndarray:
    """(prompts, models): each model's expected win rate (ties half) against an opponent drawn from `opponent`
    (weights over the same models; a model may meet itself at 0.5), or, without weights, uniformly from the
    others: the utility P2L's router maximises under a cost constraint (P2L uses the arena's sampling weights)."""
    rates = np.zeros_like(theta)
    for row, (t, s) in enumerate(zip(theta, tie, strict=True)):
        wins = win_matrix(pair_probabilities(t, float(s), tie_model))
        rates[row] = (wins.sum(axis=1) - 0.5) / max(1, len(t) - 1) if opponent is None else wins @ (opponent / opponent.sum())
    return rates


def held_out_coefficients(run_dir: str, prompt_ids, models: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """(prompts, models) coefficients of each prompt from the fold model that never saw it, (prompts,) tie
    parameters and the run's tie model: what `field_win_rates` turns into a router's utilities."""
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
    return theta, ties.loc[wanted].to_numpy(dtype=np.float64), load_p2l_run(run_dir).tie_model


def new_prompt_coefficients(
    run_dir: str, prompts: list[list[str | None]], models: list[str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """`held_out_coefficients` for prompts no model saw: the fold models' mean coefficients and tie parameters."""
    fitted = load_p2l_run(run_dir)
    theta, tie = fold_coefficients(fitted, prompts, chosen_models(fitted, models))
    return theta.mean(axis=0), tie.mean(axis=0), fitted.tie_model


def out_of_fold_coefficients(model_dirs: list[Path], frame: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """Every prompt's coefficients from the fold model that never saw it (`model_dirs[k]`: fold k's saved model)."""
    parts = []
    for fold in np.unique(folds):
        model = load_model(model_dirs[int(fold)])
        rows = frame[folds == fold].drop_duplicates("group")
        prompts, codes = unique_prompts(rows)  # two groups may hold one text: each group gets its text's row
        theta, tie = model.coefficients(prompts)
        theta, tie = theta[codes], tie[codes]
        long = pd.DataFrame(theta, columns=model.models_).assign(group=rows["group"].to_numpy(), fold=int(fold), tie=tie)
        parts.append(long.melt(id_vars=["group", "fold", "tie"], var_name="model", value_name="coefficient"))
    table = pd.concat(parts, ignore_index=True)
    return table[["group", "fold", "model", "coefficient", "tie"]].sort_values(["group", "model"], ignore_index=True)


def coefficient_agreement(coefficients: pd.DataFrame, grades: pd.DataFrame) -> dict[str, float]:
    """Mean Spearman, over prompts, between held-out coefficients and the judge's grades of that prompt."""
    truth = grades.assign(question_id=grades["question_id"].astype(str)).set_index(["question_id", "model"])["grade"]
    correlations = []
    for group, rows in coefficients.groupby("group"):
        true = np.array([truth.get((group, m), np.nan) for m in rows["model"]])
        ok = np.isfinite(true)
        if ok.sum() > 2 and np.std(true[ok]) > 0:
            correlations.append(spearmanr(rows["coefficient"].to_numpy()[ok], true[ok]).statistic)
    return {"prompts": len(correlations), "mean_spearman_vs_grades": float(np.nanmean(correlations)) if correlations else np.nan}


def p2l_figures(frame: pd.DataFrame, oof: np.ndarray, coefficients: pd.DataFrame, folds, grades) -> dict:
    """P2L's out-of-fold figures beside the names-only global leaderboard's, on the same folds."""
    y = frame["label"].to_numpy()
    names_only = names_only_out_of_fold(frame, folds)
    out = {"p2l": score_report(y, oof), "names_only_bradley_terry": score_report(y, names_only)}
    if grades is not None:
        out["p2l"]["per_prompt_leaderboard"] = per_prompt_rank_agreement(frame, oof, grades)
        out["p2l"]["coefficients_vs_grades"] = coefficient_agreement(coefficients, grades)
        out["names_only_bradley_terry"]["per_prompt_leaderboard"] = per_prompt_rank_agreement(frame, names_only, grades)
    return out


def held_out_category_boards(
    run_dir: str | Path, frame: pd.DataFrame, category_of_group: dict[str, str], min_prompts: int = 10
) -> pd.DataFrame:
    """Per category of prompts: P2L's aggregate leaderboard over the category's prompts, from each prompt's held-out
    coefficients, against that category's own Bradley-Terry fitted on its battles (the battles no coefficient saw).

    Beside it, the same aggregation of the global leaderboard each prompt's fold was trained with (names only, the
    fold's other prompts): the leaderboard one would use without P2L. Both are scored by Spearman with the
    category's ratings and by log loss on the category's battles (the category's own fit is the in-sample floor)."""
    table = out_of_fold_table(run_dir)
    tie_model = load_p2l_run(run_dir).tie_model
    models = sorted(table["model"].unique())
    index = {m: k for k, m in enumerate(models)}
    coefficients = table.pivot_table(index="group", columns="model", values="coefficient")[models]
    per_group = table.drop_duplicates("group").set_index("group")[["fold", "tie"]]
    groups = frame["group"].astype(str).to_numpy()
    a, b = frame["model_a"].map(index).to_numpy(), frame["model_b"].map(index).to_numpy()
    outcome = np.array([1.0, 0.0, 0.5])[frame["label"].to_numpy()]
    label = frame["label"].to_numpy()
    fold_of_row = per_group["fold"].reindex(groups).to_numpy()
    global_fits = {
        int(f): BradleyTerry(len(models), tie_model).fit(
            *aggregate(a[fold_of_row != f], b[fold_of_row != f], outcome[fold_of_row != f])
        )
        for f in np.unique(per_group["fold"])
    }
    rows = []
    for name in sorted(set(category_of_group.values())):
        members = sorted(g for g, c in category_of_group.items() if c == name and g in coefficients.index)
        battles = np.isin(groups, members)
        if len(members) < min_prompts or len(np.unique(np.concatenate([a[battles], b[battles]]))) < len(models):
            continue
        own = BradleyTerry(len(models), tie_model).fit(*aggregate(a[battles], b[battles], outcome[battles]))
        p2l, _ = _aggregate_fit(
            coefficients.loc[members].to_numpy(dtype=np.float64), per_group.loc[members, "tie"].to_numpy(), tie_model
        )
        folds = per_group.loc[members, "fold"].astype(int).to_numpy()
        global_board, _ = _aggregate_fit(
            np.stack([global_fits[f].ratings_ for f in folds]), np.log([global_fits[f].tie_param_ for f in folds]), tie_model
        )
        row = {"category": name, "prompts": len(members), "battles": int(battles.sum())}
        for key, fit in (("p2l_aggregate", p2l), ("global_leaderboard", global_board), ("category_in_sample", own)):
            row[f"{key}_log_loss"] = log_loss(label[battles], fit.predict_proba(a[battles], b[battles]))
            if key != "category_in_sample":
                row[f"{key}_spearman"] = float(spearmanr(fit.ratings_, own.ratings_).statistic)
        mean_coefficient = coefficients.loc[members].to_numpy(dtype=np.float64).mean(axis=0)
        row["mean_coefficient_spearman"] = float(spearmanr(mean_coefficient, own.ratings_).statistic)
        rows.append(row)
    return pd.DataFrame(rows)
