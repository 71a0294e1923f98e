"""Naming and symmetry of feature columns.

Columns are `group__kind_name`. Per-response values are `a_`/`b_`; `diff_` (a − b) and
`logratio_` (log1p a − log1p b) flip sign when A and B are exchanged; anything else
(`prompt_`, `pair_`) is unchanged by the exchange.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import polars as pl

from features.text import distinct_select, identity

ANTISYMMETRIC_KINDS = ("diff", "logratio")


def paired(
    tf: pl.DataFrame,
    group: str,
    per_response: Callable[[str], dict[str, pl.Expr]],
    logratio: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Evaluates `per_response(column)` for A and B, then adds a − b and, for counts, log-ratios.

    Both sides are stacked under A's column names and evaluated in one pass over their distinct inputs: an
    answer that is A in one row and B in another is measured once.
    """
    exprs = per_response("response_a")
    names = list(exprs)
    inputs_a = sorted({root for expr in exprs.values() for root in expr.meta.root_names()})
    columns_a = sorted({key for root in inputs_a for key in identity(root)} | set(inputs_a))
    side_b = tf.select(_other_side(c) for c in columns_a).rename({_other_side(c): c for c in columns_a})
    stacked = pl.concat([tf.select(columns_a), side_b], rechunk=False)
    values = distinct_select(stacked, [expr.cast(pl.Float64).alias(name) for name, expr in exprs.items()])
    n = tf.height
    out = pl.concat(
        [values.slice(k * n, n).select(pl.col(m).alias(f"{group}__{side}_{m}") for m in names) for k, side in enumerate("ab")],
        how="horizontal",
    )
    extra = []
    for name in names:
        a, b = pl.col(f"{group}__a_{name}"), pl.col(f"{group}__b_{name}")
        extra.append((a - b).alias(f"{group}__diff_{name}"))
        if name in logratio:
            extra.append((a.log1p() - b.log1p()).alias(f"{group}__logratio_{name}"))
    return out.with_columns(extra)


def _other_side(column: str) -> str:
    """B's column for one of A's (and the reverse); a column of neither side is its own."""
    for this, other in (("response_a", "response_b"), ("response_b", "response_a")):
        if column.startswith(this):
            return other + column[len(this) :]
    return column


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
