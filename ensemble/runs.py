"""Reading several model runs' prediction files and lining them up by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition.errors import InputError
from competition.predictions import OOF_FILE, TEST_FILE, load_predictions, probabilities_for


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


def load_runs(run_dirs: list[str | Path]) -> AlignedRuns:
    """Out-of-fold predictions of every run on the rows all runs share (in the first run's order),
    and test predictions when every run has them."""
    if not run_dirs:
        raise InputError("no runs given to blend")
    frames = [load_predictions(Path(d) / OOF_FILE) for d in run_dirs]
    first = frames[0]
    for column in ("label", "fold"):
        if column not in first.columns:
            raise InputError("out-of-fold file lacks labels/folds", Path(run_dirs[0]) / OOF_FILE, column=column)
    shared = set(first["id"])
    for frame in frames[1:]:
        shared &= set(frame["id"])
    base = first[first["id"].isin(shared)]
    if len(base) == 0:
        raise InputError("the runs share no out-of-fold ids (were they trained on the same file?)")
    ids = base["id"].to_numpy()
    oof = [probabilities_for(frame, ids) for frame in frames]
    with_groups = [frame for frame in frames if "group" in frame.columns]
    groups = with_groups[0].set_index("id").loc[ids, "group"].astype(str).to_numpy() if with_groups else None
    test_paths = [Path(d) / TEST_FILE for d in run_dirs]
    test_ids, test = None, None
    if all(p.exists() for p in test_paths):
        test_frames = [load_predictions(p) for p in test_paths]
        test_ids = test_frames[0]["id"].to_numpy()
        test = [probabilities_for(frame, test_ids) for frame in test_frames]
    return AlignedRuns(
        names=[Path(d).name for d in run_dirs],
        ids=ids,
        y=base["label"].to_numpy(dtype=np.int64),
        folds=base["fold"].to_numpy(),
        groups=groups,
        oof=oof,
        test_ids=test_ids,
        test=test,
    )
