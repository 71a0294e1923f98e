"""Reading several model runs' prediction files and lining them up by id, after checking they agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.predictions import OOF_FILE, TEST_FILE, load_predictions, probabilities_for
from competition.runs import read_run, run_file


@dataclass
class AlignedRuns:
    names: list[str]
    ids: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    groups: np.ndarray | None  # prompt group per row, from the first run whose file has it
    oof: list[np.ndarray]
    test_ids: np.ndarray | None
    test: list[np.ndarray] | None


def _check_agreement(frames: list[pd.DataFrame], paths: list[Path], ids: np.ndarray) -> None:
    """Every run must give each shared row the same label and fold (the same fold table)."""
    first = frames[0].set_index("id").loc[ids]
    for frame, path in zip(frames[1:], paths[1:], strict=True):
        other = frame.set_index("id").loc[ids]
        for column in ("label", "fold"):
            if column not in other.columns:
                raise InputError("out-of-fold file lacks labels/folds", path, column=column)
            differ = np.flatnonzero(other[column].to_numpy() != first[column].to_numpy())
            if len(differ):
                raise InputError(
                    f"row id {ids[differ[0]]!r} has {column} {other[column].iloc[differ[0]]} here but "
                    f"{first[column].iloc[differ[0]]} in {paths[0]}: the runs were not made on the same "
                    f"{'fold table' if column == 'fold' else 'labels'}",
                    path,
                    column=column,
                )


def _test_predictions(run_dirs: list[Path], manifests: list[dict]) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
    paths = [d / TEST_FILE for d in run_dirs]
    present = [TEST_FILE in m["files"] for m in manifests]
    if not any(present):
        return None, None
    if not all(present):
        raise InputError("some runs have test predictions and some do not", paths[present.index(False)])
    frames = [load_predictions(p) for p in paths]
    test_ids = frames[0]["id"].to_numpy()
    for frame, path in zip(frames[1:], paths[1:], strict=True):
        if set(frame["id"]) != set(test_ids):
            raise InputError(
                f"test ids differ from {paths[0]} ({len(frame)} vs {len(test_ids)} rows): not the same test file", path
            )
    return test_ids, [probabilities_for(frame, test_ids) for frame in frames]


def load_runs(run_dirs: list[str | Path]) -> AlignedRuns:
    """Out-of-fold predictions of every run on the rows all runs share (in the first run's order), and test
    predictions when the runs have them; refuses runs whose folds, labels or test ids disagree."""
    if not run_dirs:
        raise InputError("no runs given to blend")
    run_dirs = [Path(d) for d in run_dirs]
    if len(set(map(Path.resolve, run_dirs))) != len(run_dirs):
        raise InputError("the same run is given twice")
    manifests = [read_run(directory) for directory in run_dirs]
    paths = [run_file(d, OOF_FILE, m) for d, m in zip(run_dirs, manifests, strict=True)]
    frames = [load_predictions(p) for p in paths]
    first = frames[0]
    for column in ("label", "fold"):
        if column not in first.columns:
            raise InputError("out-of-fold file lacks labels/folds", paths[0], column=column)
    shared = set(first["id"])
    for frame in frames[1:]:
        shared &= set(frame["id"])
    base = first[first["id"].isin(shared)]
    if len(base) == 0:
        raise InputError("the runs share no out-of-fold ids (were they trained on the same file?)")
    ids = base["id"].to_numpy()
    _check_agreement(frames, paths, ids)
    oof = [probabilities_for(frame, ids) for frame in frames]
    with_groups = [frame for frame in frames if "group" in frame.columns]
    groups = with_groups[0].set_index("id").loc[ids, "group"].astype(str).to_numpy() if with_groups else None
    test_ids, test = _test_predictions(run_dirs, manifests)
    return AlignedRuns(
        names=[d.name for d in run_dirs],
        ids=ids,
        y=base["label"].to_numpy(dtype=np.int64),
        folds=base["fold"].to_numpy(),
        groups=groups,
        oof=oof,
        test_ids=test_ids,
        test=test,
    )
