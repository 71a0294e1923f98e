"""Judges: given prompts and two models' answers, P(first wins), P(second wins), P(tie) for each prompt.

- `VerdictJudge`: recorded verdicts replayed (published judgments, a run's out-of-fold predictions, or the
  graded outcomes as an oracle with optional noise). A verdict recorded for (B, A) serves (A, B) swapped.
- `ModelJudge`: any fitted model of this project scores the pairs built from the answers.
- `GenerativeJudge`: a local causal LM asked which answer is better, read from its next-token logits for
  "A", "B" and "tie", both orders averaged to remove position bias.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from analysis.arena.answers import AnswerBook
from competition.errors import InputError
from competition.labels import LABEL_COLUMNS, swap_probabilities

Comparison = tuple[str, str, str]  # (prompt id, first model, second model)


class Judge(Protocol):
    def judge(self, comparisons: list[Comparison]) -> np.ndarray:
        """(n, 3): P(first wins), P(second wins), P(tie) per comparison."""
        ...


class VerdictJudge:
    def __init__(self, verdicts: dict[Comparison, np.ndarray], name: str = "verdicts"):
        self.verdicts, self.name = verdicts, name

    def judge(self, comparisons: list[Comparison]) -> np.ndarray:
        out = np.empty((len(comparisons), 3))
        for i, (prompt, x, y) in enumerate(comparisons):
            if (prompt, x, y) in self.verdicts:
                out[i] = self.verdicts[(prompt, x, y)]
            elif (prompt, y, x) in self.verdicts:
                out[i] = swap_probabilities(self.verdicts[(prompt, y, x)][None])[0]
            else:
                raise InputError(f"judge {self.name!r} has no verdict for {x!r} vs {y!r} on prompt {prompt!r}")
        return out

    @classmethod
    def from_pairs_probabilities(cls, frame: pd.DataFrame, groups: np.ndarray, probs: np.ndarray, name: str) -> VerdictJudge:
        """A model's predictions as verdicts; a comparison that occurs on several rows gets their mean."""
        sums: dict[Comparison, np.ndarray] = {}
        counts: dict[Comparison, int] = {}
        keys = zip(groups.astype(str), frame["model_a"].astype(str), frame["model_b"].astype(str), strict=True)
        for (prompt, x, y), p in zip(keys, np.asarray(probs, dtype=np.float64), strict=True):
            key, p = ((prompt, x, y), p) if x <= y else ((prompt, y, x), p[[1, 0, 2]])
            sums[key] = sums.get(key, 0.0) + p
            counts[key] = counts.get(key, 0) + 1
        return cls({key: total / counts[key] for key, total in sums.items()}, name)

    @classmethod
    def from_table(cls, table: pd.DataFrame, source: Path) -> VerdictJudge:
        """Recorded verdicts (prompt, model_a, model_b, the three winner columns). A comparison recorded again,
        in either order, must agree with its first record; a model against itself is refused."""
        from data.loader import labels_from_columns

        probs = np.eye(3)[labels_from_columns(table, source)]
        verdicts: dict[Comparison, np.ndarray] = {}
        first_row: dict[Comparison, int] = {}
        rows = zip(table["prompt"].astype(str), table["model_a"].astype(str), table["model_b"].astype(str), probs, strict=True)
        for row, (prompt, x, y, p) in enumerate(rows, start=1):
            if x == y:
                raise InputError(f"{x!r} is compared with itself", source, row, "model_b")
            key, p = ((prompt, x, y), p) if x < y else ((prompt, y, x), swap_probabilities(p[None])[0])
            if key in verdicts and not np.array_equal(verdicts[key], p):
                raise InputError(
                    f"contradicts row {first_row[key]}: the same comparison ({x!r} vs {y!r} on prompt {prompt!r}) "
                    "recorded with another winner",
                    source,
                    row,
                    "winner_model_a",
                )
            verdicts.setdefault(key, p)
            first_row.setdefault(key, row)
        return cls(verdicts, source.name)


def checked_grades(grades: pd.DataFrame, source: Path | None = None) -> dict[tuple[str, str], float]:
    """(prompt, model) → grade; a grade that is not a finite number, or a second grade of one answer, is one line."""
    values = pd.to_numeric(grades["grade"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise InputError(f"grade must be a finite number, got {grades['grade'].iloc[bad[0]]!r}", source, int(bad[0]) + 1, "grade")
    keys = list(zip(grades["prompt"].astype(str), grades["model"].astype(str), strict=True))
    again = np.flatnonzero(pd.Series(keys).duplicated().to_numpy())
    if len(again):
        prompt, model = keys[again[0]]
        raise InputError(f"{model!r} is graded twice on prompt {prompt!r}", source, int(again[0]) + 1, "grade")
    return dict(zip(keys, values.tolist(), strict=True))


def graded_oracle(grades: pd.DataFrame, book: AnswerBook, noise_sd: float, seed: int, source: Path | None = None) -> VerdictJudge:
    """Verdicts from per-answer grades (columns prompt, model, grade): the higher grade wins, equal grades tie.
    With `noise_sd` > 0 each verdict compares grades plus normal noise drawn from a hash of (seed, prompt, pair),
    so a verdict is the same whenever it is asked for."""
    grade = checked_grades(grades, source)
    verdicts = {}
    for prompt in book.prompts:
        present = sorted(m for m in book.models if (prompt, m) in grade)
        for i, x in enumerate(present):
            for y in present[i + 1 :]:
                gx, gy = grade[(prompt, x)], grade[(prompt, y)]
                if noise_sd > 0:
                    digest = hashlib.sha256(f"{seed}|{prompt}|{x}|{y}".encode()).digest()
                    noise = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0, noise_sd, 2)
                    gx, gy = gx + noise[0], gy + noise[1]
                verdicts[(prompt, x, y)] = np.eye(3)[0 if gx > gy else 1 if gy > gx else 2]
    return VerdictJudge(verdicts, f"graded oracle (noise {noise_sd:g})")


def run_judge(run_dir: str | Path, frame: pd.DataFrame, groups: np.ndarray) -> VerdictJudge:
    """A cv or train-transformer run's out-of-fold predictions as verdicts: each pair judged by a model that
    never saw its prompt."""
    from competition.runs import run_predictions

    oof = run_predictions(run_dir).set_index("id")
    known = frame["id"].astype(str).isin(oof.index).to_numpy()
    if not known.any():
        raise InputError("the judge run's out-of-fold rows share no id with the pairs file", run_dir)
    probs = oof.loc[frame["id"].astype(str)[known], list(LABEL_COLUMNS)].to_numpy()
    return VerdictJudge.from_pairs_probabilities(frame[known], groups[known], probs, Path(run_dir).name)


class ModelJudge:
    """A fitted estimator (any family) scoring the pairs it is asked about, built from the answer book. Features
    that look across a file see only the pairs of one request."""

    def __init__(self, estimator, book: AnswerBook, name: str = "model"):
        self.estimator, self.book, self.name = estimator, book, name

    def judge(self, comparisons: list[Comparison]) -> np.ndarray:
        rows = [
            {
                "id": f"{prompt}|{x}|{y}",
                "prompt": self.book.prompts[prompt],
                "response_a": self.book.answers[(prompt, x)],
                "response_b": self.book.answers[(prompt, y)],
                "model_a": x,
                "model_b": y,
            }
            for prompt, x, y in comparisons
        ]
        return np.asarray(self.estimator.predict_proba(pd.DataFrame(rows)), dtype=np.float64)


JUDGE_TEMPLATE = (
    "You are judging two answers to a user's prompt.\n\nPrompt:\n{prompt}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\n"
    "Which answer is better? Reply with A, B or tie.\nVerdict:"
)
CHOICES = (" A", " B", " tie")


CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel")


def check_causal_model(model_dir: str | Path) -> Path:
    """A local model directory whose config names a causal language model (one that can answer "A" or "B")."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from models.backbone import check_model_dir

    path = check_model_dir(model_dir, weights=False)  # the kind of model first: an encoder is named as one
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"unreadable model config ({str(err).splitlines()[0]})", path / "config.json") from None
    named = config.architectures or []
    causal = any(a.endswith(CAUSAL_HEADS) for a in named) if named else config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if not causal:
        kind = ", ".join(named) or config.model_type
        raise InputError(f"a {kind} model is not a causal language model: a judge LM must generate text", path)
    return check_model_dir(path)


class GenerativeJudge:
    """A local causal LM as a pairwise judge (transformers; local files only). Each comparison is asked in both
    orders and the two verdicts (the second swapped back) are averaged, which removes position bias."""

    def __init__(self, model_dir: str | Path, book: AnswerBook, device: str = "cpu", max_chars: int = 2000):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = check_causal_model(model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as err:  # missing or damaged weights or tokenizer files
            raise InputError(f"cannot load the judge LM ({str(err).splitlines()[0]})", path) from None
        self.model.config.use_cache = False
        self.book, self.device, self.max_chars, self.torch = book, device, max_chars, torch
        self.choice_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"][-1] for c in CHOICES]

    def _one_order(self, prompt: str, a: str, b: str) -> np.ndarray:
        text = JUDGE_TEMPLATE.format(prompt=prompt[: self.max_chars], a=a[: self.max_chars], b=b[: self.max_chars])
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"].to(self.device)
        with self.torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, -1, self.choice_ids].double()
        return self.torch.softmax(logits, dim=-1).cpu().numpy()

    def judge(self, comparisons: list[Comparison]) -> np.ndarray:
        out = np.empty((len(comparisons), 3))
        for i, (prompt_id, x, y) in enumerate(comparisons):
            prompt = "\n\n".join(t or "" for t in self.book.prompts[prompt_id])
            a = "\n\n".join(t or "" for t in self.book.answers[(prompt_id, x)])
            b = "\n\n".join(t or "" for t in self.book.answers[(prompt_id, y)])
            forward = self._one_order(prompt, a, b)
            backward = swap_probabilities(self._one_order(prompt, b, a)[None])[0]
            out[i] = (forward + backward) / 2
        return out
