"""Refusals and apologies, in English and a few other languages; a refusal usually loses."""

from __future__ import annotations

import polars as pl

from features.paired import paired

VERSION = 1
# Refusals open the answer; scanning only its start keeps the regex cheap on long responses.
HEAD_CHARS = 400
REFUSAL = (
    r"(?i)\b(i(?:'m| am) (?:sorry|unable|not able)|i (?:can(?:'|no)t|cannot|won't|will not) (?:help|assist|provide|"
    r"do|create|write|fulfill|comply|generate)|as an ai\b|as a language model|i don't have (?:access|the ability)|"
    r"it(?:'s| is) not (?:appropriate|ethical)|against (?:my|the) (?:guidelines|policy)|"
    r"lo siento|no puedo|je suis désolé|je ne peux pas|es tut mir leid|ich kann (?:nicht|keine)|"
    r"mi dispiace|non posso|desculpe|não posso|извините|к сожалению|я не могу)"
    r"|抱歉|对不起|我无法|我不能|申し訳|できません|죄송"
)
APOLOGY = r"(?i)\b(sorry|apologi[sz]e|my apologies|unfortunately|disculp|désolé|entschuldig)"
HEDGE = r"(?i)\b(however|it depends|i'm not sure|i am not sure|may not be accurate|consult a)"


def _flags(column: str) -> dict[str, pl.Expr]:
    head = pl.col(column).str.slice(0, HEAD_CHARS)
    return {
        "refusal": head.str.contains(REFUSAL),
        "apology": head.str.contains(APOLOGY),
        "hedges": pl.col(column).str.count_matches(HEDGE),
    }


def refusal_features(tf: pl.DataFrame) -> pl.DataFrame:
    out = paired(tf, "refusal", _flags)
    both = out.select(
        (pl.col("refusal__a_refusal") * pl.col("refusal__b_refusal")).alias("refusal__pair_both"),
    )
    return pl.concat([out, both], how="horizontal")
