"""Small synthetic arena data: no shared data needed, and learnable (the longer answer tends to win)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

WORDS = "the model answer explains code data result because example python function value list table".split()


def _response(rng: np.random.Generator, n_words: int) -> str:
    text = " ".join(rng.choice(WORDS, size=n_words))
    if rng.random() < 0.3:
        text += "\n\n```python\nprint('hi')\n```\n"
    if rng.random() < 0.3:
        text = "## Answer\n- **point** one\n- point two\n" + text
    return text


def make_arena_frame(
    n_prompts: int = 12, rows_per_prompt: int = 6, seed: int = 0, labels: bool = True, models: bool = True
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        prompt = json.dumps([f"Question {p}: explain {rng.choice(WORDS)} please"])
        for r in range(rows_per_prompt):
            len_a, len_b = rng.integers(5, 120, size=2)
            gap = (len_a - len_b) / 60 + rng.normal(0, 0.6)
            winner = 0 if gap > 0.35 else 1 if gap < -0.35 else 2
            row = {
                "id": str(100000 + p * 100 + r),
                "prompt": prompt,
                "response_a": json.dumps([_response(rng, len_a)]),
                "response_b": json.dumps([_response(rng, len_b)]),
            }
            if models:
                row["model_a"], row["model_b"] = rng.choice(["m1", "m2", "m3", "m4"], size=2, replace=False)
            if labels:
                row.update(
                    {"winner_model_a": int(winner == 0), "winner_model_b": int(winner == 1), "winner_tie": int(winner == 2)}
                )
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def arena_csv(tmp_path):
    """Writes a synthetic arena CSV and returns its path; keyword arguments go to make_arena_frame."""

    def write(name: str = "train.csv", **kwargs) -> str:
        path = tmp_path / name
        make_arena_frame(**kwargs).to_csv(path, index=False)
        return str(path)

    return write


TRICKY_ROWS = [
    # nulls inside turns, a [null] response, an empty string
    {"id": "t1", "prompt": '["Hi", null, "again"]', "response_a": "[null]", "response_b": '[""]'},
    # not JSON at all: kept as raw text
    {"id": "t2", "prompt": "plain text prompt", "response_a": '["ok"]', "response_b": "{broken"},
    # unicode, a lone surrogate escape, code blocks, a table
    {
        "id": "t3",
        "prompt": '["\\u00bfQu\\u00e9 tal? \\ud83d"]',
        "response_a": '["```python\\nx = 1\\n```\\n| a | b |\\n|---|---|"]',
        "response_b": '["Lo siento, no puedo ayudar con eso. \\u6211\\u65e0\\u6cd5"]',
    },
    # multi-turn with identical responses and a refusal
    {
        "id": "t4",
        "prompt": '["one", "two"]',
        "response_a": '["I\'m sorry, I cannot help with that.", "No."]',
        "response_b": '["I\'m sorry, I cannot help with that.", "No."]',
    },
]


@pytest.fixture
def tricky_csv(tmp_path):
    path = tmp_path / "tricky.csv"
    pd.DataFrame(TRICKY_ROWS).to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory):
    """A names-aware LightGBM cv run on a synthetic arena file, to serve as a distillation teacher's recipe."""
    from competition.config import load_config
    from stages import training as pipeline

    root = tmp_path_factory.mktemp("teacher")
    path = root / "train.csv"
    make_arena_frame(n_prompts=18, rows_per_prompt=8, seed=4).to_csv(path, index=False)
    overrides = {
        "data": {"train": str(path), "test": ""},
        "out": str(root / "names"),
        "cv": {"folds": 3, "fold_dir": ""},
        "features": {"groups": ["lengths", "markdown", "model_names"], "cache_dir": ""},
        "lgbm": {"max_rounds": 30, "early_stopping_rounds": 5, "min_data_in_leaf": 5, "num_threads": 1},
    }
    pipeline.run_cv(load_config(pipeline.training_config("lgbm"), None, [overrides]))
    return str(root / "names")


@pytest.fixture
def teacher_calls(monkeypatch) -> list[tuple[set, set]]:
    """Every LightGBM prediction made while the test runs, as (prompt groups its model was fitted on, prompt
    groups it was asked about): a teacher must never be asked about a prompt it saw."""
    from models.lgbm import LGBMPreference

    calls: list[tuple[set, set]] = []
    original_fit, original_predict = LGBMPreference.fit, LGBMPreference.predict_proba

    def spy_fit(self, frame, y, groups=None):
        self.fitted_groups_ = set(frame["group"])
        return original_fit(self, frame, y, groups)

    def spy_predict(self, frame):
        calls.append((self.fitted_groups_, set(frame["group"])))
        return original_predict(self, frame)

    monkeypatch.setattr(LGBMPreference, "fit", spy_fit)
    monkeypatch.setattr(LGBMPreference, "predict_proba", spy_predict)
    return calls


@pytest.fixture
def keep_torch_threads():
    """Estimators set torch's thread count for the process; later tests get it back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
