"""The feature registry's prompt-only columns: what a router or a prompt encoder can know before any answer exists."""

from __future__ import annotations

import pandas as pd

from features.registry import build_features

PROMPT_GROUPS = ("lengths", "markdown", "style")


def registry_prompt_features(prompts: list[list[str | None]]) -> pd.DataFrame:
    """The registry's prompt-only columns (`group__prompt_*`); responses are left empty."""
    empty = [[""]] * len(prompts)
    frame = pd.DataFrame({"prompt": list(prompts), "response_a": empty, "response_b": empty})
    table = build_features(frame, PROMPT_GROUPS)
    return table[[c for c in table.columns if "__prompt_" in c]].reset_index(drop=True)
