"""Every model's answer to every prompt, read from a pairs file (Kaggle format with model names)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from competition.errors import InputError
from competition.folds import prompt_groups


@dataclass(frozen=True)
class AnswerBook:
    answers: dict[tuple[str, str], list]  # (prompt id, model) → the answer's turns
    prompts: dict[str, list]  # prompt id → the prompt's turns
    models: tuple[str, ...]

    @classmethod
    def from_pairs(cls, frame: pd.DataFrame, source: str = "") -> AnswerBook:
        if "model_a" not in frame.columns or "model_b" not in frame.columns:
            raise InputError("the pairs file has no model_a/model_b columns: models cannot be ranked", source)
        groups = prompt_groups(frame).astype(str).to_numpy()
        answers, prompts = {}, {}
        for group, row in zip(groups, frame.itertuples(index=False), strict=True):
            prompts.setdefault(group, list(row.prompt))
            answers.setdefault((group, str(row.model_a)), list(row.response_a))
            answers.setdefault((group, str(row.model_b)), list(row.response_b))
        models = tuple(sorted({m for _, m in answers}))
        return cls(answers, prompts, models)

    def shared_prompts(self, x: str, y: str) -> list[str]:
        """Prompts both models answered, in a fixed order."""
        return sorted(p for p in self.prompts if (p, x) in self.answers and (p, y) in self.answers)

    def items(self, x: str, y: str) -> list[str]:
        """What a comparison of x and y is judged on: the prompts both answered."""
        return self.shared_prompts(x, y)

    def check_models(self, names, what: str) -> None:
        unknown = [m for m in names if m not in self.models]
        if unknown:
            raise InputError(f"{what} {unknown[0]!r} has no answers in the pairs file (models there: {', '.join(self.models)})")
