"""The columnar view every feature group reads: one polars frame of joined texts and turn counts."""

from __future__ import annotations

import pandas as pd
import polars as pl

RESPONSES = ("response_a", "response_b")
SIDES = {"response_a": "a", "response_b": "b"}
WORDS_SUFFIX = "_words"
SHARED_AB = "response_ab_shared_words"


def text_frame(frame: pd.DataFrame) -> pl.DataFrame:
    """Joined text per part plus the turn counts the joined text hides (turns, null turns)."""
    columns: dict[str, list] = {}
    for part in ("prompt", *RESPONSES):
        turns = frame[part].tolist()
        columns[part] = ["\n\n".join(t or "" for t in row) for row in turns]
        columns[f"{part}_turns"] = [len(row) for row in turns]
        columns[f"{part}_null_turns"] = [sum(t is None for t in row) for row in turns]
    columns["group"] = frame["group"].tolist() if "group" in frame.columns else list(range(len(frame)))
    for model_col in ("model_a", "model_b"):
        if model_col in frame.columns:
            columns[model_col] = frame[model_col].astype(str).tolist()
    return _with_words(pl.DataFrame(columns, strict=False))


def _with_words(tf: pl.DataFrame) -> pl.DataFrame:
    """Adds each part's word count and set of lower-cased words, shared by every group that needs them.

    Words are whitespace-separated pieces: a regex word extraction costs twice as much here and moves
    the similarity features very little.
    """
    parts = ("prompt", *RESPONSES)
    pieces = tf.select(
        # Tabs stay: rare in answers, and a second replace pass costs about 10% of all extraction.
        pl.col(part).str.to_lowercase().str.replace_all("\n", " ", literal=True).str.split(" ")
        for part in parts
    )
    words = pieces.select(
        *((pl.col(p).list.len() - pl.col(p).list.count_matches("")).alias(f"{p}_word_count") for p in parts),
        *(pl.col(p).list.set_difference(pl.lit([""])).alias(p + WORDS_SUFFIX) for p in parts),  # also de-duplicates
    )
    # Two groups compare A with B; the intersection of the long answer lists is the dearest step, so once.
    shared = words.select(
        pl.col("response_a" + WORDS_SUFFIX).list.set_intersection(pl.col("response_b" + WORDS_SUFFIX)).list.len().alias(SHARED_AB)
    )
    return pl.concat([tf, words, shared], how="horizontal")
