"""Folds, made once: grouped by prompt, stratified by label where possible, seeded, written as a table.

The fold table (id, group, fold) of a data file and fold settings is written once under `fold_dir`,
keyed by a hash of the rows' ids, groups and labels; every stage reads the same table, so a LightGBM
run, a transformer run and the blender agree on which prompts each fold holds. The table is sealed
(competition/rundir.py) and checked when read: a changed one is refused (runs made with it may disagree with a new
one), an unsealed one (a kill before its seal) was never used and is made again.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from competition.errors import InputError
from competition.rundir import UNSEALED, check_sealed, seal_state, write_sealed

_SPACE = re.compile(r"\s+")
FOLD_TABLE_COLUMNS = ("id", "group", "fold")


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
    n_groups = pd.Series(groups).nunique()
    if n_groups < n_folds:
        raise InputError(f"{n_folds} folds need at least {n_folds} distinct prompts, found {n_groups}")
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
    try:
        with warnings.catch_warnings():
            # stratification is best effort: a label rarer than the folds are many is spread as far as it goes
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            for fold, (_, valid_idx) in enumerate(splits):
                folds[valid_idx] = fold
    except ValueError as err:  # e.g. every label has fewer rows than there are folds (a tiny file)
        raise InputError(f"{len(groups)} rows cannot be split into {n_folds} folds ({err})") from None
    return folds


def data_key(ids, groups, labels: np.ndarray | None) -> str:
    """Hash of what decides the folds: row ids in order, their prompt groups and labels."""
    digest = hashlib.sha256()
    for values in (ids, groups, [] if labels is None else labels):
        digest.update("\x1f".join(map(str, np.asarray(values))).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def fold_table(ids, groups, labels: np.ndarray | None, n_folds: int, seed: int, fold_dir: str | Path | None) -> pd.DataFrame:
    """The fold table (id, group, fold) for these rows; read from `fold_dir` when written before, else made
    and written there once. Without `fold_dir` it is made in memory (tests, throwaway runs)."""
    ids = np.asarray(ids).astype(str)
    groups = np.asarray(groups).astype(str)
    path, key = None, data_key(ids, groups, labels)
    if fold_dir:
        path = Path(fold_dir) / f"folds-{key}-k{n_folds}-s{seed}.parquet"
        if path.exists() and seal_state(path, key) != UNSEALED:
            return checked_fold_table(
                pd.read_parquet(check_sealed(path, key, "delete it to make it again")), ids, groups, n_folds, path
            )
    table = pd.DataFrame({"id": ids, "group": groups, "fold": assign_folds(labels, pd.Series(groups), n_folds, seed)})
    if path is not None:
        write_sealed(path, lambda p: table.to_parquet(p, index=False), key)
    return table


def checked_fold_table(table: pd.DataFrame, ids: np.ndarray, groups: np.ndarray, n_folds: int, path: Path) -> pd.DataFrame:
    """A fold table read back: its rows are these rows, each prompt in one fold, every fold 0..n_folds-1 used."""
    if list(table.columns) != list(FOLD_TABLE_COLUMNS):
        raise InputError(f"not a fold table (columns {list(table.columns)})", path)
    if not (np.array_equal(table["id"].to_numpy(str), ids) and np.array_equal(table["group"].to_numpy(str), groups)):
        raise InputError("the fold table's rows are not this file's rows", path, column="id")
    folds = table["fold"].to_numpy()
    if not np.array_equal(np.unique(folds), np.arange(n_folds)) or table.groupby("group")["fold"].nunique().max() > 1:
        raise InputError(f"not a grouped split into {n_folds} folds", path, column="fold")
    return table


def folds_for(frame: pd.DataFrame, cv) -> np.ndarray:
    """The fold of every row of a labelled frame (`id`, `group`, `label` columns) under the fold settings `cv`
    (a CVConfig): read from the fold table written once per data file and settings, so every stage agrees."""
    table = fold_table(frame["id"], frame["group"], frame["label"].to_numpy(), cv.folds, cv.seed, cv.fold_dir)
    return table["fold"].to_numpy()


def inner_fold_predictions(groups, n_folds: int, seed: int, fit_predict, what: str = "a nested fit") -> np.ndarray:
    """Out-of-fold values for nested fits (a trained feature group, a teacher, a penalty choice): every row's value
    comes from `fit_predict(fold, fit_rows, held_rows)` fitted on prompt-grouped inner folds without that row's prompt.

    `fit_predict` returns the held rows' values (an array with one row per held row, or a DataFrame); the result has
    one row per input row, in input order (a DataFrame when `fit_predict` returns DataFrames)."""
    groups = pd.Series(np.asarray(groups).astype(str))
    n_folds = min(n_folds, groups.nunique())
    if n_folds < 2:
        raise InputError(f"{what} needs rows from at least two prompts to be fitted without leakage")
    folds = assign_folds(None, groups, n_folds, seed)
    parts, order = [], []
    for fold in range(n_folds):
        held = np.flatnonzero(folds == fold)
        parts.append(fit_predict(fold, np.flatnonzero(folds != fold), held))
        order.append(held)
    position = np.argsort(np.concatenate(order), kind="stable")
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True).iloc[position].reset_index(drop=True)
    return np.concatenate(parts)[position]
