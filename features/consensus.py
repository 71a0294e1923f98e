"""How typical each response is among all responses to the same prompt in the batch.

Rows sharing a prompt arrive together (in Kaggle's test set too), and answers that agree with the
others tend to be the right ones. Uses no labels, so it is safe for test data; folds group by
prompt, so a validation prompt's responses all sit in the validation fold.
"""

from __future__ import annotations

import polars as pl

from features.text import ID_SUFFIX, RESPONSES, SHARED_AB, SIDES, WORDS_SUFFIX

VERSION = 2


def _response_table(tf: pl.DataFrame) -> pl.DataFrame:
    """One row per distinct answer to each prompt: group, key (the text's id), words, chars."""
    answers = pl.concat(
        [
            tf.select(
                pl.col("group").cast(pl.String), pl.col(c + ID_SUFFIX).alias("key"), pl.col(c).str.len_chars().alias("chars")
            )
            for c in RESPONSES
        ]
    ).with_row_index("row")
    table = answers.unique(subset=["group", "key"], keep="first", maintain_order=True)
    # the word lists are the bulky part: gathered only for the distinct answers
    words = pl.concat([tf[c + WORDS_SUFFIX] for c in RESPONSES], rechunk=False).gather(table["row"])
    return table.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("rid"),
        "group",
        "key",
        # no words: null, not an empty set (a pair with such an answer has no agreement value)
        pl.when(words.list.len() > 0).then(words).alias("words"),
        "chars",
    )


def _known_overlaps(tf: pl.DataFrame) -> pl.DataFrame:
    """(key, key_o, shared) for the answer pairs that are rows of the file, both ways round: the text frame has
    counted their shared words already, and on most files every pair of answers to a prompt is a row."""
    rows = tf.select(
        pl.col("response_a" + ID_SUFFIX).alias("key"),
        pl.col("response_b" + ID_SUFFIX).alias("key_o"),
        pl.col(SHARED_AB).alias("shared"),
    )
    swapped = rows.select(pl.col("key_o").alias("key"), pl.col("key").alias("key_o"), "shared")
    return pl.concat([rows, swapped]).unique(subset=["key", "key_o"])


def _typicality(table: pl.DataFrame, tf: pl.DataFrame) -> pl.DataFrame:
    sizes = table.select("group", "rid", "key", pl.col("words").list.len().alias("size"))
    others = sizes.select("group", *(pl.col(c).alias(f"{c}_o") for c in ("rid", "key", "size")))
    both_have_words = pl.col("size").is_not_null() & pl.col("size_o").is_not_null()
    pairs = (
        sizes.join(others, on="group")
        .filter(pl.col("rid") != pl.col("rid_o"))
        .join(_known_overlaps(tf), on=["key", "key_o"], how="left")
    )
    # answers to one prompt that never share a row: their word sets are intersected here
    todo = pairs.filter(pl.col("shared").is_null() & both_have_words).select("rid", "rid_o")
    words = table["words"]
    counted = todo.with_columns(
        words.gather(todo["rid"]).list.set_intersection(words.gather(todo["rid_o"])).list.len().alias("counted")
    )
    pairs = pairs.join(counted, on=["rid", "rid_o"], how="left")
    # an answer without words (null) gets no agreement value with anyone
    shared = pl.when(both_have_words).then(pl.coalesce("shared", "counted"))
    union = pl.col("size") + pl.col("size_o") - shared
    pairs = pairs.with_columns((shared / pl.max_horizontal(union, 1)).alias("j"))
    # sorted before the mean: the sum then runs in one order whatever the file's row order or blocks (exact equality)
    agreement = pairs.group_by("rid").agg(pl.col("j").sort().mean().alias("agreement"), pl.col("j").max().alias("closest"))
    per_prompt = table.group_by("group").agg(
        pl.col("chars").median().alias("median_chars"), pl.len().cast(pl.Float64).alias("distinct")
    )
    return (
        table.join(agreement, on="rid", how="left")
        .join(per_prompt, on="group", how="left")
        .with_columns(
            (pl.col("chars").log1p() - pl.col("median_chars").log1p()).alias("chars_vs_median"),
            ((pl.col("chars").rank("average").over("group") - 1) / pl.max_horizontal(pl.col("distinct") - 1, 1)).alias(
                "length_rank"
            ),
        )
        .select("group", "key", "agreement", "closest", "chars_vs_median", "length_rank", "distinct")
    )


def consensus_features(tf: pl.DataFrame) -> pl.DataFrame:
    stats = _typicality(_response_table(tf), tf)
    measures = ("agreement", "closest", "chars_vs_median", "length_rank")
    rows = tf.select(pl.col("group").cast(pl.String), *(pl.col(c + ID_SUFFIX).alias(f"key_{SIDES[c]}") for c in RESPONSES))
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
