"""Naming and symmetry of feature columns.

Columns are `group__kind_name`. Per-response values are `a_`/`b_`; `diff_` (a − b) and
`logratio_` (log1p a − log1p b) flip sign when A and B are exchanged; anything else
(`prompt_`, `pair_`) is unchanged by the exchange.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import polars as pl

from features.text import RESPONSES, SIDES

ANTISYMMETRIC_KINDS = ("diff", "logratio")


def paired(
    tf: pl.DataFrame,
    group: str,
    per_response: Callable[[str], dict[str, pl.Expr]],
    logratio: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Evaluates `per_response(column)` for A and B, then adds a − b and, for counts, log-ratios."""
    exprs = []
    names: list[str] = []
    for column in RESPONSES:
        side = SIDES[column]
        for name, expr in per_response(column).items():
            exprs.append(expr.cast(pl.Float64).alias(f"{group}__{side}_{name}"))
            if side == "a":
                names.append(name)
    out = tf.select(exprs)
    extra = []
    for name in names:
        a, b = pl.col(f"{group}__a_{name}"), pl.col(f"{group}__b_{name}")
        extra.append((a - b).alias(f"{group}__diff_{name}"))
        if name in logratio:
            extra.append((a.log1p() - b.log1p()).alias(f"{group}__logratio_{name}"))
    return out.with_columns(extra)


def swap_columns(columns: list[str]) -> tuple[list[str], list[str]]:
    """For a feature table with these columns: the column to read for each after the A/B exchange,
    and the columns whose sign flips."""
    source, negate = [], []
    present = set(columns)
    for col in columns:
        group, _, rest = col.partition("__")
        kind, _, name = rest.partition("_")
        if kind in ("a", "b"):
            other = f"{group}__{'b' if kind == 'a' else 'a'}_{name}"
            source.append(other if other in present else col)
        else:
            source.append(col)
            if kind in ANTISYMMETRIC_KINDS:
                negate.append(col)
    return source, negate


def swap_features(features: pd.DataFrame) -> pd.DataFrame:
    """The feature table the same rows would have had with responses A and B exchanged."""
    source, negate = swap_columns(list(features.columns))
    swapped = features[source].copy()
    swapped.columns = features.columns
    swapped[negate] = -swapped[negate]
    return swapped
