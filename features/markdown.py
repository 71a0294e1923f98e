"""Formatting that readers (and judges) reward: headers, bold, lists, code, tables, links."""

from __future__ import annotations

import polars as pl

from features.paired import paired
from features.text import distinct_select

VERSION = 1
PATTERNS = {
    "headers": r"(?m)^#{1,6}\s",
    "bold": r"\*\*[^*\n]+\*\*|__[^_\n]+__",
    "bullets": r"(?m)^\s*[-*+•]\s",
    "numbered": r"(?m)^\s*\d+[.)]\s",
    "code_fences": r"```",
    "inline_code": r"`[^`\n]+`",
    "table_rows": r"(?m)^\s*\|.*\|\s*$",
    "links": r"\[[^\]\n]+\]\([^)\s]+\)|https?://\S+",
    "paragraphs": r"\n\s*\n",
}


def _counts(column: str) -> dict[str, pl.Expr]:
    text = pl.col(column)
    counts = {name: text.str.count_matches(pattern) for name, pattern in PATTERNS.items()}
    counts["code_fences"] = counts["code_fences"] // 2
    return counts


def markdown_features(tf: pl.DataFrame) -> pl.DataFrame:
    out = paired(tf, "markdown", _counts, logratio=tuple(PATTERNS))
    asks_code = pl.col("prompt").str.contains(r"```|\bcode\b|\bpython\b|\bfunction\b|\bscript\b|\bSQL\b|\bjava", literal=False)
    prompt_code = distinct_select(tf, [asks_code.cast(pl.Float64).alias("markdown__prompt_asks_code")])
    return pl.concat([out, prompt_code], how="horizontal")
