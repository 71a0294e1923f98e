"""Fold assignment, made once: grouped by prompt, stratified by label where possible, seeded."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

_SPACE = re.compile(r"\s+")


def normalise_prompt(turns: list[str | None]) -> str:
    text = "\n".join(t or "" for t in turns)
    return _SPACE.sub(" ", text).strip().lower()


def prompt_groups(frame: pd.DataFrame) -> pd.Series:
    """Group key per row: `question_id` where given, else a hash of the normalised prompt text.

    Rows that share a prompt are not independent, so they must never straddle train and validation.
    """
    hashed = frame["prompt"].map(lambda turns: hashlib.sha1(normalise_prompt(turns).encode("utf-8", "replace")).hexdigest())
    if "question_id" in frame.columns:
        qid = frame["question_id"].astype("string")
        return qid.where(qid.notna() & (qid.str.len() > 0), hashed).astype(str)
    return hashed


def assign_folds(labels: np.ndarray | None, groups: pd.Series, n_folds: int, seed: int) -> np.ndarray:
    """Fold id per row (0..n_folds-1). Label-stratified when labels exist, always grouped."""
    n_groups = groups.nunique()
    if n_groups < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} distinct prompts, found {n_groups}")
    folds = np.full(len(groups), -1, dtype=np.int64)
    dummy = np.zeros(len(groups))
    if labels is not None:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(dummy, labels, groups)
    else:
        # GroupKFold only shuffles from sklearn 1.6 on; permuting group codes keeps it seeded everywhere.
        codes = pd.factorize(groups)[0]
        permuted = np.random.default_rng(seed).permutation(codes.max() + 1)[codes]
        splits = GroupKFold(n_splits=n_folds).split(dummy, groups=permuted)
    for fold, (_, valid_idx) in enumerate(splits):
        folds[valid_idx] = fold
    return folds
