"""Missing answers: null turns, empty or whitespace-only responses."""

from __future__ import annotations

import polars as pl

from features.paired import paired

VERSION = 1


def _missing(column: str) -> dict[str, pl.Expr]:
    return {
        "null_turns": pl.col(f"{column}_null_turns"),
        "all_null": pl.col(f"{column}_null_turns") == pl.col(f"{column}_turns"),
        "empty": pl.col(column).str.strip_chars().str.len_bytes() == 0,
    }


def null_features(tf: pl.DataFrame) -> pl.DataFrame:
    out = paired(tf, "nulls", _missing)
    prompt = tf.select(pl.col("prompt_null_turns").cast(pl.Float64).alias("nulls__prompt_null_turns"))
    return pl.concat([out, prompt], how="horizontal")
