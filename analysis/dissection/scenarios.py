"""A cheap prompt classifier for per-scenario dissection: keyword rules on the last prompt turn, first match wins
in the order code, math, writing, reasoning; everything else is "other". Rules rather than a learned model so
the scenario of a prompt can be read off and argued with."""

from __future__ import annotations

import re

import pandas as pd

SCENARIOS = ("code", "math", "writing", "reasoning", "other")
RULES: tuple[tuple[str, re.Pattern], ...] = (
    (
        "code",
        re.compile(
            r"```|\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|html|css|bash|regex|function|code|script|"
            r"program|compile|debug|api|class|library|algorithm|json|docker|linux)\b",
            re.I,
        ),
    ),
    (
        "math",
        re.compile(
            r"\d\s*[-+*/^=]\s*\d|\b(solve|equation|integral|derivative|probability|calculate|compute|math|prove|theorem|"
            r"matrix|percent|sum of|how many)\b",
            re.I,
        ),
    ),
    (
        "writing",
        re.compile(
            r"\b(write|essay|story|poem|email|letter|article|blog|rewrite|summari[sz]e|draft|lyrics|slogan|tweet)\b", re.I
        ),
    ),
    ("reasoning", re.compile(r"\b(why|explain|reason|puzzle|riddle|logic|step by step|compare|difference between)\b", re.I)),
)


def scenario_of(text: str) -> str:
    for name, pattern in RULES:
        if pattern.search(text):
            return name
    return "other"


def scenarios(prompts: pd.Series) -> pd.Series:
    """The scenario of each row, from its prompt's last non-empty turn."""
    last = prompts.map(lambda turns: next((t for t in reversed(list(turns)) if t), ""))
    return last.map(scenario_of).rename("scenario")
