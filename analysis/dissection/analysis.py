"""One dissection: property differences → posterior effects for every judge, every scenario, and judge similarity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.dissection.bayes import Prior, posterior
from analysis.dissection.properties import standardised
from analysis.dissection.scenarios import SCENARIOS
from competition.errors import InputError

LABELS_JUDGE = "labels"


@dataclass
class Dissection:
    effects: pd.DataFrame  # judge × property: effect, interval, odds ratio (all pairs)
    scenarios: pd.DataFrame  # property × scenario odds ratios of the labels judge (NaN: too few pairs)
    scenario_pairs: pd.Series  # decided pairs per scenario
    similarity: pd.DataFrame  # judge × judge correlation of effect vectors


def shared_rows(judges: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, pd.DataFrame]:
    """Every judge restricted to the rows all judges keep (weight > 0), and per judge what that cost.

    Judges are compared by correlating their effects: fitted on different rows (a model judge keeping the pairs the
    labels call ties, a run scoring only some rows), their effects would differ by the rows as well as by the
    judge."""
    kept = np.column_stack([np.asarray(w) > 0 for _, w in judges.values()])
    common = kept.all(axis=1)
    if not common.any():
        raise InputError("no pair is kept by every judge (each leaves out its ties or the pairs it does not score)")
    rows = pd.DataFrame(
        {"keeps": kept.sum(axis=0), "left_out": (~kept).sum(axis=0), "dropped_for_others": (kept & ~common[:, None]).sum(axis=0)},
        index=pd.Index(list(judges), name="judge"),
    )
    return {name: (t, np.where(common, w, 0.0)) for name, (t, w) in judges.items()}, rows


def fit_judge(
    x: pd.DataFrame, target: np.ndarray, weight: np.ndarray, prior: Prior, mcmc_steps: int, scales: pd.Series
) -> pd.DataFrame:
    """The posterior table over the rows with weight; a property constant (zero) on those rows has no effect to
    estimate and gets NaN rather than the prior's zero."""
    keep = weight > 0
    varies = (x[keep] != 0).any().to_numpy()
    columns = list(x.columns[varies])
    fitted = posterior(x.to_numpy()[keep][:, varies], target[keep], weight[keep], prior, mcmc_steps, names=columns)
    table = fitted.table(scales).set_index("property").reindex(list(x.columns)).reset_index()
    table["credible"] = table["credible"].fillna(False).astype(bool)
    return table.assign(pairs=float(weight[keep].sum()))


def dissect(
    diffs: pd.DataFrame,
    judges: dict[str, tuple[np.ndarray, np.ndarray]],
    scenario: pd.Series,
    prior: Prior,
    min_pairs: int,
    mcmc_steps: int = 2000,
) -> Dissection:
    """`diffs`: raw A − B property differences; `judges`: name → (target, weight) per row, the labels first.
    Every judge is fitted on the rows all of them keep (`shared_rows`)."""
    x, scales = standardised(diffs)
    if x.shape[1] == 0:
        raise InputError("every property difference is zero on these pairs: nothing to dissect")
    judges, _ = shared_rows(judges)
    effects = pd.concat([fit_judge(x, t, w, prior, mcmc_steps, scales).assign(judge=name) for name, (t, w) in judges.items()])
    target, weight = judges[LABELS_JUDGE]
    scenario = scenario.to_numpy()
    columns, pairs = {}, {}
    for name in SCENARIOS:
        inside = scenario == name
        pairs[name] = float(weight[inside].sum())
        if pairs[name] < min_pairs:
            columns[name] = pd.Series(np.nan, index=x.columns)
            continue
        # standardised on all pairs, so a scenario's effect is per the same step as the overall one
        table = fit_judge(x[inside], target[inside], weight[inside], prior, mcmc_steps, scales)
        columns[name] = table.set_index("property")["odds_ratio"]
    by_judge = effects.pivot(index="property", columns="judge", values="effect")[list(judges)]
    return Dissection(effects.reset_index(drop=True), pd.DataFrame(columns), pd.Series(pairs), by_judge.corr())
