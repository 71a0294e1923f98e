"""How much each response says: characters, words, lines, turns, rough tokens."""

from __future__ import annotations

import polars as pl

from features.paired import paired
from features.text import distinct_select

VERSION = 2
# A rough BPE token count: words plus punctuation marks. One character-class pass costs half of a
# word-or-punctuation-run regex and the count differs little on prose and code.
PUNCTUATION = r"[^\w\s]"
COUNTS = ("chars", "words", "lines", "tokens")


def _measures(column: str) -> dict[str, pl.Expr]:
    text = pl.col(column)
    return {
        "chars": text.str.len_chars(),
        "words": pl.col(f"{column}_word_count"),
        "lines": text.str.count_matches("\n") + (text.str.len_bytes() > 0).cast(pl.Int64),
        "tokens": pl.col(f"{column}_word_count") + text.str.count_matches(PUNCTUATION),
        "turns": pl.col(f"{column}_turns"),
    }


def length_features(tf: pl.DataFrame) -> pl.DataFrame:
    per_response = paired(tf, "lengths", _measures, logratio=COUNTS)
    prompt = distinct_select(
        tf,
        [
            pl.col("prompt").str.len_chars().cast(pl.Float64).alias("lengths__prompt_chars"),
            pl.col("prompt_word_count").cast(pl.Float64).alias("lengths__prompt_words"),
            pl.col("prompt_turns").cast(pl.Float64).alias("lengths__prompt_turns"),
        ],
    )
    return pl.concat([per_response, prompt], how="horizontal")
