"""How the texts relate: duplicate and near-duplicate responses, prompt–response and response–response overlap.

Similarity is Jaccard (and containment) over lower-cased word sets, computed in polars: TF-IDF cosine
through scikit-learn costs ~25 s on the 52k texts of arena-bench-pairs, which breaks the speed target.
"""

from __future__ import annotations

import polars as pl

from features.paired import paired
from features.text import SHARED_AB, WORDS_SUFFIX

VERSION = 1
NEAR_DUPLICATE = 0.9


def shared_words(left: str, right: str) -> pl.Expr:
    if (left, right) == ("response_a", "response_b"):
        return pl.col(SHARED_AB)
    return pl.col(left + WORDS_SUFFIX).list.set_intersection(pl.col(right + WORDS_SUFFIX)).list.len()


def jaccard(left: str, right: str) -> pl.Expr:
    # |A ∩ B| / (|A| + |B| − |A ∩ B|): one set operation instead of two.
    shared = shared_words(left, right)
    union = pl.col(left + WORDS_SUFFIX).list.len() + pl.col(right + WORDS_SUFFIX).list.len() - shared
    return pl.when(union > 0).then(shared / union).otherwise(None)


def containment(part: str, within: str) -> pl.Expr:
    """Share of `part`'s words that also appear in `within`."""
    size = pl.col(part + WORDS_SUFFIX).list.len()
    return pl.when(size > 0).then(shared_words(part, within) / size).otherwise(None)


def _to_prompt(column: str) -> dict[str, pl.Expr]:
    words = pl.col(column + WORDS_SUFFIX).list.len()
    return {
        "prompt_jaccard": jaccard("prompt", column),
        "prompt_covered": containment("prompt", column),
        "unique_words": words,
        "unique_share": words / (pl.col(f"{column}_word_count") + 1),
    }


def similarity_features(tf: pl.DataFrame) -> pl.DataFrame:
    out = paired(tf, "similarity", _to_prompt)
    pair = tf.select(jaccard("response_a", "response_b").cast(pl.Float64).alias("similarity__pair_ab_jaccard"))
    return pl.concat([out, pair], how="horizontal")


def duplicate_features(tf: pl.DataFrame) -> pl.DataFrame:
    overlap = tf.select(jaccard("response_a", "response_b").fill_null(1.0).alias("j"))["j"]
    return tf.select(
        (pl.col("response_a") == pl.col("response_b")).cast(pl.Float64).alias("duplicates__pair_identical"),
        (overlap == 1.0).cast(pl.Float64).alias("duplicates__pair_same_words"),
        (overlap >= NEAR_DUPLICATE).cast(pl.Float64).alias("duplicates__pair_near_duplicate"),
        (pl.col("response_a").str.slice(0, 200) == pl.col("response_b").str.slice(0, 200))
        .cast(pl.Float64)
        .alias("duplicates__pair_same_opening"),
    )
