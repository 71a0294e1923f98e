"""The columnar view every feature group reads: one polars frame of joined texts, turn counts and word sets,
and `distinct_select`, which evaluates expressions once per distinct text instead of once per row."""

from __future__ import annotations

from operator import countOf

import pandas as pd
import polars as pl

RESPONSES = ("response_a", "response_b")
PARTS = ("prompt", *RESPONSES)
SIDES = {"response_a": "a", "response_b": "b"}
WORDS_SUFFIX = "_words"
WORD_COUNT_SUFFIX = "_word_count"
ID_SUFFIX = "_id"
SHARED_AB = "response_ab_shared_words"


def text_frame(frame: pd.DataFrame) -> pl.DataFrame:
    """Joined text per part plus the turn counts the joined text hides (turns, null turns), each text's id
    (equal texts share one, across parts too) and its words."""
    columns: dict[str, list] = {}
    for part in PARTS:
        turns = frame[part].tolist()
        # most cells hold one turn: taking it is ten times faster than joining
        columns[part] = [row[0] if len(row) == 1 and row[0] is not None else "\n\n".join(t or "" for t in row) for row in turns]
        columns[f"{part}_turns"] = list(map(len, turns))
        columns[f"{part}_null_turns"] = [countOf(row, None) for row in turns]
    columns["group"] = frame["group"].tolist() if "group" in frame.columns else list(range(len(frame)))
    for model_col in ("model_a", "model_b"):
        if model_col in frame.columns:
            columns[model_col] = frame[model_col].astype(str).tolist()
    return _with_words(pl.DataFrame(columns, strict=False))


def _with_words(tf: pl.DataFrame) -> pl.DataFrame:
    """Adds each part's text id, word count and set of lower-cased words, computed once per distinct text
    (on arena-bench-pairs each answer sits in 12 rows). Words are kept as 64-bit hashes: integers intersect
    several times faster than strings, and two words of one file sharing a hash is a ~1e-8 chance.

    Words are the non-empty pieces between spaces and newlines: a regex word extraction costs twice as much
    here and moves the similarity features very little.
    """
    stacked = pl.concat([tf.select(pl.col(part).alias("text")) for part in PARTS], rechunk=False).with_row_index("row")
    # a text's id is the row of its first occurrence among all parts' texts
    ids = stacked.select(pl.col("row").min().over("text").alias("id"))["id"]
    distinct = stacked.filter(pl.col("row") == ids)
    # Tabs stay: rare in answers, and a second replace pass costs about 10% of all extraction.
    pieces = pl.col("text").str.to_lowercase().str.replace_all("\n", " ", literal=True).str.split(" ")
    # hashed before the empty pieces go: comparing integers is cheaper than comparing strings
    hashed = distinct.select(pl.col("row").alias("id"), pieces.list.eval(pl.element().hash()).alias("words"))
    hashed = hashed.with_columns(pl.col("words").list.eval(pl.element().filter(pl.element() != pl.lit("").hash())))
    words = hashed.select("id", pl.col("words").list.len().alias("word_count"), pl.col("words").list.unique())
    if distinct.height < stacked.height:
        words = ids.to_frame().join(words, on="id", how="left", maintain_order="left")
    n = tf.height
    parts = [
        words.slice(k * n, n).select(
            pl.col("id").alias(part + ID_SUFFIX),
            pl.col("word_count").alias(part + WORD_COUNT_SUFFIX),
            pl.col("words").alias(part + WORDS_SUFFIX),
        )
        for k, part in enumerate(PARTS)
    ]
    out = pl.concat([tf, *parts], how="horizontal")
    # Two groups compare A with B: the intersection of the long answer sets is the dearest step, so once.
    a_words, b_words = pl.col("response_a" + WORDS_SUFFIX), pl.col("response_b" + WORDS_SUFFIX)
    return out.with_columns(a_words.list.set_intersection(b_words).list.len().alias(SHARED_AB))


def identity(column: str) -> tuple[str, ...]:
    """The columns whose values decide `column`: a text's id for the text and what is derived from it."""
    for part in PARTS:
        if column in (part, part + WORDS_SUFFIX, part + WORD_COUNT_SUFFIX):
            return (part + ID_SUFFIX,)
    if column == SHARED_AB:
        return ("response_a" + ID_SUFFIX, "response_b" + ID_SUFFIX)
    return (column,)


def distinct_select(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """`frame.select(exprs)`, with each distinct combination of the expressions' inputs evaluated once.

    Inputs are told apart by `identity` (a text by its id), so rows repeating a text cost one evaluation.
    """
    roots = sorted({root for expr in exprs for root in expr.meta.root_names()})
    keys = sorted({key for root in roots for key in identity(root)})
    keyed = frame.select(keys).with_row_index("row")
    first = keyed.unique(subset=keys, keep="first", maintain_order=True).with_row_index("slot")
    if first.height == frame.height:  # nothing repeats (a file of distinct texts): no gathering
        return frame.lazy().select(exprs).collect()
    # lazily: the optimiser then computes a sub-expression that several features share (a text's opening,
    # its words shared with the prompt) once
    values = frame.select(pl.col(roots).gather(first["row"])).lazy().select(exprs).collect()
    slots = keyed.join(first.drop("row"), on=keys, how="left", maintain_order="left")["slot"]
    return values[slots]
