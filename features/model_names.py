"""Model identity as categorical features. Opt-in: the Kaggle test set has no model columns."""

from __future__ import annotations

import hashlib

import polars as pl

from competition.errors import InputError

VERSION = 1
# LightGBM reads these as categories; a stable hash keeps codes equal across train and test files.
CODE_SPACE = 2**20


def model_code(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big") % CODE_SPACE


def model_name_features(tf: pl.DataFrame) -> pl.DataFrame:
    if "model_a" not in tf.columns:
        raise InputError("feature group 'model_names' needs the model_a/model_b columns, which this file lacks")
    return tf.select(
        pl.col("model_a").map_elements(model_code, return_dtype=pl.Int64).cast(pl.Float64).alias("model_names__a_code"),
        pl.col("model_b").map_elements(model_code, return_dtype=pl.Int64).cast(pl.Float64).alias("model_names__b_code"),
    )
