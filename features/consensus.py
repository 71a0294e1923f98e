"""How typical each response is among all responses to the same prompt in the batch.

Rows sharing a prompt arrive together (in Kaggle's test set too), and answers that agree with the
others tend to be the right ones. Uses no labels, so it is safe for test data; folds group by
prompt, so a validation prompt's responses all sit in the validation fold.
"""

from __future__ import annotations

import polars as pl

from features.text import RESPONSES, SIDES, WORDS_SUFFIX

VERSION = 2


def _response_table(tf: pl.DataFrame) -> pl.DataFrame:
    parts = [
        tf.select(
            pl.col("group").cast(pl.String),
            pl.col(c).hash().alias("key"),
            pl.col(c + WORDS_SUFFIX).alias("words"),
            pl.col(c).str.len_chars().alias("chars"),
        )
        for c in RESPONSES
    ]
    table = pl.concat(parts).unique(subset=["group", "key"], maintain_order=True)
    # The self-join below copies every word list many times: integers copy and intersect far faster than strings.
    hashed = table.select(pl.int_range(pl.len()).alias("rid"), "words").explode("words").with_columns(pl.col("words").hash())
    hashed = hashed.group_by("rid", maintain_order=True).agg(pl.col("words").drop_nulls())
    return (
        table.drop("words")
        .with_row_index("rid")
        .with_columns(pl.col("rid").cast(pl.Int64))
        .join(hashed.with_columns(pl.col("rid").cast(pl.Int64)), on="rid", how="left", maintain_order="left")
    )


def _typicality(table: pl.DataFrame) -> pl.DataFrame:
    others = table.select("group", pl.col("rid").alias("rid_o"), pl.col("words").alias("words_o"))
    pairs = table.select("group", "rid", "words").join(others, on="group").filter(pl.col("rid") != pl.col("rid_o"))
    shared = pl.col("words").list.set_intersection("words_o").list.len()
    union = pl.col("words").list.len() + pl.col("words_o").list.len() - shared
    pairs = pairs.with_columns((shared / pl.max_horizontal(union, 1)).alias("j"))
    # sorted before the mean: the sum then runs in one order whatever the file's row order or blocks (exact equality)
    agreement = pairs.group_by("rid").agg(pl.col("j").sort().mean().alias("agreement"), pl.col("j").max().alias("closest"))
    sizes = table.group_by("group").agg(
        pl.col("chars").median().alias("median_chars"), pl.len().cast(pl.Float64).alias("distinct")
    )
    return (
        table.join(agreement, on="rid", how="left")
        .join(sizes, on="group", how="left")
        .with_columns(
            (pl.col("chars").log1p() - pl.col("median_chars").log1p()).alias("chars_vs_median"),
            ((pl.col("chars").rank("average").over("group") - 1) / pl.max_horizontal(pl.col("distinct") - 1, 1)).alias(
                "length_rank"
            ),
        )
        .select("group", "key", "agreement", "closest", "chars_vs_median", "length_rank", "distinct")
    )


def consensus_features(tf: pl.DataFrame) -> pl.DataFrame:
    stats = _typicality(_response_table(tf))
    measures = ("agreement", "closest", "chars_vs_median", "length_rank")
    rows = tf.select(pl.col("group").cast(pl.String), *(pl.col(c).hash().alias(f"key_{SIDES[c]}") for c in RESPONSES))
    out = []
    for column in RESPONSES:
        side = SIDES[column]
        joined = rows.join(stats, left_on=["group", f"key_{side}"], right_on=["group", "key"], how="left", maintain_order="left")
        out.append(joined.select(pl.col(m).cast(pl.Float64).alias(f"consensus__{side}_{m}") for m in measures))
        if side == "a":
            out.append(joined.select(pl.col("distinct").cast(pl.Float64).alias("consensus__prompt_distinct_responses")))
    frame = pl.concat(out, how="horizontal")
    return frame.with_columns(
        (pl.col(f"consensus__a_{m}") - pl.col(f"consensus__b_{m}")).alias(f"consensus__diff_{m}") for m in measures
    )
