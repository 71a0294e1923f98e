"""Texture of the writing: digits, capitals, non-ASCII, questions back to the user, vocabulary."""

from __future__ import annotations

import polars as pl

from features.paired import paired
from features.text import distinct_select

VERSION = 2
# Shares are estimated on each text's opening: the full texts cost 3x more and the shares barely move.
SHARE_CHARS = 1000


def _share(column: str, pattern: str) -> pl.Expr:
    text = pl.col(column).str.slice(0, SHARE_CHARS)
    return text.str.count_matches(pattern) / (text.str.len_chars() + 1)


def _texture(column: str) -> dict[str, pl.Expr]:
    text = pl.col(column)
    return {
        "digit_share": _share(column, r"\d"),
        "upper_share": _share(column, r"[A-Z]"),
        "non_ascii_share": _share(column, r"[^\x00-\x7F]"),
        "punct_share": _share(column, r"[.,;:!?]"),
        "questions": text.str.count_matches("?", literal=True),
        "exclaims": text.str.count_matches("!", literal=True),
        "mean_word_chars": text.str.len_chars() / (pl.col(f"{column}_word_count") + 1),
        "ends_cleanly": text.str.strip_chars_end().str.contains(r"[.!?`)\]}*:\"']$|\d$"),
    }


def style_features(tf: pl.DataFrame) -> pl.DataFrame:
    out = paired(tf, "style", _texture)
    prompt_script = distinct_select(tf, [_share("prompt", r"[^\x00-\x7F]").alias("style__prompt_non_ascii_share")])
    return pl.concat([out, prompt_script], how="horizontal")
