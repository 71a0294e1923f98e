"""Properties of a pair as A − B differences: interpretable feature-registry columns, or an external table.

Each property is a per-answer measurement (a column for A and its twin for B); its difference is antisymmetric,
so exchanging A and B negates it exactly. Differences are divided by their root mean square (not centred: a
centred difference would no longer flip sign under the exchange), so an effect is "per typical difference".
Counts enter as log(1 + count) differences, so one extra header in a short answer weighs like one in a long one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from competition.errors import InputError


@dataclass(frozen=True)
class Property:
    name: str
    column: str  # feature column without its side: group__{a,b}_<column>
    group: str
    log: bool = False  # log(1 + x) before the difference (counts)
    looks_across_file: bool = False  # computed from the other answers to the same prompt in the file


PROPERTIES: tuple[Property, ...] = (
    Property("length (tokens)", "tokens", "lengths", log=True),
    Property("headers", "headers", "markdown", log=True),
    Property("bold", "bold", "markdown", log=True),
    Property("bullet lists", "bullets", "markdown", log=True),
    Property("numbered lists", "numbered", "markdown", log=True),
    Property("code blocks", "code_fences", "markdown", log=True),
    Property("tables", "table_rows", "markdown", log=True),
    Property("links", "links", "markdown", log=True),
    Property("refuses", "refusal", "refusal"),
    Property("apologises", "apology", "refusal"),
    Property("hedges / admits limits", "hedges", "refusal", log=True),
    Property("empty answer", "empty", "nulls"),
    Property("asks questions", "questions", "style", log=True),
    Property("exclamations", "exclaims", "style", log=True),
    Property("ends cleanly (not cut off)", "ends_cleanly", "style"),
    Property("covers the prompt's words", "prompt_covered", "similarity"),
    Property("agrees with the other answers", "agreement", "consensus", looks_across_file=True),
)
PROPERTY_NAMES = tuple(p.name for p in PROPERTIES)


def feature_groups(properties: tuple[Property, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.group for p in properties))


def select(names: tuple[str, ...]) -> tuple[Property, ...]:
    """The named properties (all when `names` is empty); an unknown name is an input error."""
    if not names:
        return PROPERTIES
    known = {p.name: p for p in PROPERTIES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown property {unknown[0]!r} (known: {', '.join(PROPERTY_NAMES)})")
    return tuple(known[n] for n in names)


def differences(features: pd.DataFrame, properties: tuple[Property, ...]) -> pd.DataFrame:
    """A − B of each property, one column per property name, rows as in `features`."""
    out = {}
    for p in properties:
        a, b = features[f"{p.group}__a_{p.column}"].astype(float), features[f"{p.group}__b_{p.column}"].astype(float)
        if p.log:
            a, b = np.log1p(a.clip(lower=0)), np.log1p(b.clip(lower=0))
        out[p.name] = (a - b).to_numpy()
    return pd.DataFrame(out, index=features.index)


def external_differences(table: pd.DataFrame, ids: pd.Series, source: str) -> pd.DataFrame:
    """An external per-pair property table (id + one column per property, A − B values such as GAIR's
    {-1, 0, 1} annotations), aligned to `ids`; every id must be there and every value finite."""
    if "id" not in table.columns:
        raise InputError("the property table has no 'id' column", source)
    table = table.assign(id=table["id"].astype(str))
    duplicated = table["id"].duplicated()
    if duplicated.any():
        raise InputError(
            f"row {int(np.flatnonzero(duplicated)[0]) + 2}, column 'id': id {table['id'][duplicated].iloc[0]!r} repeats", source
        )
    columns = [c for c in table.columns if c != "id"]
    if not columns:
        raise InputError("the property table has no property column besides 'id'", source)
    indexed = table.set_index("id")
    missing = ~ids.astype(str).isin(indexed.index)
    if missing.any():
        raise InputError(f"column 'id': pair {ids[missing].iloc[0]!r} (and {int(missing.sum()) - 1} more) has no row", source)
    aligned = indexed.loc[ids.astype(str), columns]
    for column in columns:
        values = pd.to_numeric(aligned[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(np.flatnonzero(table["id"] == ids.astype(str).iloc[int(np.flatnonzero(bad)[0])])[0]) + 2
            raise InputError(f"row {row}, column {column!r}: not a finite number", source)
        aligned[column] = values
    return aligned.reset_index(drop=True).astype(float)


def standardised(diffs: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Each column divided by its root mean square (constant-zero columns dropped); returns (table, scales)."""
    scale = np.sqrt((diffs**2).mean())
    keep = scale > 0
    return diffs.loc[:, keep] / scale[keep], scale[keep]
