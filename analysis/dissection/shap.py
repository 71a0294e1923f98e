"""Sample-level explanation: LightGBM's own SHAP values (`pred_contrib`) of one pair, summed by feature group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import CLASS_A, N_CLASSES
from features.registry import group_of


def pair_contributions(model, frame: pd.DataFrame, row_id: str) -> tuple[pd.Series, pd.Series, float]:
    """(per feature group, per feature, base value) of the raw 'A wins' score for the pair `row_id`, as given
    (the model's prediction also averages the A/B-swapped twin; this explains the as-given half)."""
    match = frame.index[frame["id"].astype(str) == str(row_id)]
    if len(match) == 0:
        raise InputError(f"column 'id': no pair {row_id!r} in the training file")
    if not hasattr(model, "booster_"):
        raise InputError("SHAP values need a LightGBM model (family lgbm)")
    table = model.feature_table(frame.loc[match[:1]])
    contributions = np.asarray(model.booster_.predict(table, pred_contrib=True)).reshape(N_CLASSES, -1)[CLASS_A]
    per_feature = pd.Series(contributions[:-1], index=list(table.columns))
    per_group = per_feature.groupby([group_of(c) for c in per_feature.index]).sum()
    return per_group, per_feature, float(contributions[-1])
