"""Feature tables for files larger than memory: built in blocks of whole prompts (groups that look across the
answers to one prompt see all of them) and written as parquet parts, locally or as Ray tasks; read back in the
file's row order.

A part is `part-<k>.parquet` holding `id` and the feature columns of its block, sealed (competition/rundir.py) with
the fingerprint of the file's rows, groups and block size: a killed build resumes by building the parts that are not
sealed for this fingerprint (missing, unsealed, changed or torn), and a reader checks every seal. `parts.json`
(sealed too) names the groups, the block size and the fingerprint; parts of another file or settings are refused.
A finished `features` run names every part in its manifest, and `read_feature_table` reads only such a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.rundir import (
    ABSENT,
    CHANGED,
    FOREIGN,
    SEALED,
    UNSEALED,
    WHY,
    RunKind,
    check_sealed,
    discard,
    seal_state,
    write_sealed,
)
from competition.runs import read_run, run_file
from features.registry import build_features

log = logging.getLogger(__name__)

INDEX_FILE = "parts.json"
PARTS_DIR = "parts"


def prompt_blocks(groups: np.ndarray, rows_per_block: int) -> list[np.ndarray]:
    """Row indices in blocks of about `rows_per_block` rows; a prompt's rows are never split across blocks."""
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1]])
    blocks, current = [], []
    for start, end in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        current.extend(order[start:end])
        if len(current) >= rows_per_block:
            blocks.append(np.sort(np.asarray(current)))
            current = []
    if current:
        blocks.append(np.sort(np.asarray(current)))
    return blocks


def content_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the rows' ids and texts in file order: a table is read only for the rows it was built from."""
    digest = hashlib.sha256()
    for row in frame[["id", "prompt", "response_a", "response_b"]].itertuples(index=False):
        digest.update(json.dumps([str(row[0]), *map(list, row[1:])]).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def _fingerprint(frame: pd.DataFrame, groups: tuple[str, ...], rows_per_block: int) -> str:
    return f"{content_fingerprint(frame)}|{','.join(groups)}|{rows_per_block}"


def part_path(out_dir: Path, k: int) -> Path:
    return out_dir / f"part-{k:05d}.parquet"


def build_block(frame: pd.DataFrame, groups: tuple[str, ...], path: str, made_for: str) -> str:
    """One part: the block's feature table with its ids, written atomically and sealed (run as a Ray task, or here)."""
    table = build_features(frame.reset_index(drop=True), groups, None)
    table.insert(0, "id", frame["id"].astype(str).to_numpy())
    write_sealed(Path(path), lambda tmp: table.to_parquet(tmp, index=False), made_for)
    return path


def parts_to_build(out_dir: Path, n_parts: int, fingerprint: str) -> list[int]:
    """Parts not sealed for `fingerprint`; a changed or torn one is discarded (it is rebuilt from the file). A part
    sealed for another fingerprint means the folder holds another build: refused, like a foreign parts.json."""
    states = {k: seal_state(part_path(out_dir, k), fingerprint) for k in range(n_parts)}
    foreign = [k for k, state in states.items() if state == FOREIGN]
    if foreign:
        raise InputError(
            f"holds parts of another file or settings ({part_path(out_dir, foreign[0]).name}; choose another --out)", out_dir
        )
    for k, state in states.items():
        if state in (CHANGED, UNSEALED):
            if state == CHANGED:
                log.warning("%s %s: built again", part_path(out_dir, k), WHY[state])
            discard(part_path(out_dir, k))
    return [k for k, state in states.items() if state != SEALED]


def build_parts(
    frame: pd.DataFrame,
    groups: tuple[str, ...],
    group_of_row: np.ndarray,
    out_dir: str | Path,
    rows_per_block: int,
    engine: str = "local",
    address: str = "",
) -> dict:
    """Writes the missing parts of `frame`'s feature table into `out_dir`; returns counts and timings."""
    out_dir = Path(out_dir)
    fingerprint = _fingerprint(frame, groups, rows_per_block)
    index = out_dir / INDEX_FILE
    if seal_state(index, None) != ABSENT:
        check_sealed(index, None, "remove the folder to build it again, or choose another --out")
        if json.loads(index.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            raise InputError(
                "these parts were built from another file or other groups/block size (choose another --out)", out_dir
            )
    blocks = prompt_blocks(group_of_row, rows_per_block)
    missing = parts_to_build(out_dir, len(blocks), fingerprint) if out_dir.is_dir() else list(range(len(blocks)))
    ray = None
    if engine == "ray" and missing:
        from competition.cluster import connect

        ray = connect(address, 2)  # an unreachable cluster is refused before anything is written
    meta = {"fingerprint": fingerprint, "content": content_fingerprint(frame), "groups": list(groups), "parts": len(blocks)}
    text = json.dumps(meta | {"rows": len(frame)})
    write_sealed(index, lambda tmp: tmp.write_text(text, encoding="utf-8"), fingerprint)
    paths = [part_path(out_dir, k) for k in range(len(blocks))]
    if ray is not None:
        task = ray.remote(max_retries=3)(build_block)
        ray.get([task.remote(frame.iloc[blocks[k]], groups, str(paths[k]), fingerprint) for k in missing])
    else:
        for k in missing:
            build_block(frame.iloc[blocks[k]], groups, str(paths[k]), fingerprint)
    return {"parts": len(blocks), "built": len(missing), "skipped": len(blocks) - len(missing)}


def _index(parts_dir: Path) -> dict:
    index = check_sealed(parts_dir / INDEX_FILE, None, "not a feature table built by `features`, or a damaged one")
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
        parts, groups, fingerprint = int(meta["parts"]), list(meta["groups"]), str(meta["fingerprint"])
    except (ValueError, KeyError, TypeError):
        raise InputError("unreadable index of the feature table", index) from None
    if parts < 1:
        raise InputError("the feature table has no parts", index)
    return meta | {"parts": parts, "groups": groups, "fingerprint": fingerprint}


def read_parts(parts_dir: str | Path, frame: pd.DataFrame, groups: tuple[str, ...]) -> pd.DataFrame:
    """The feature table of `frame` (its row order) from the sealed parts in `parts_dir`; they must cover `groups`."""
    parts_dir = Path(parts_dir)
    meta = _index(parts_dir)
    absent = [g for g in groups if g not in meta["groups"]]
    if absent:
        raise InputError(f"the feature table has no group {absent[0]!r} (built with {', '.join(meta['groups'])})", parts_dir)
    if meta.get("content") != content_fingerprint(frame):
        raise InputError("the feature table was built from other rows (another file, or another --max-rows)", parts_dir)
    paths = [part_path(parts_dir, k) for k in range(meta["parts"])]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(f"{len(missing)} of {len(paths)} parts are missing (run `features` again to finish them)", parts_dir)
    tables = []
    for path in paths:
        table = pd.read_parquet(check_sealed(path, meta["fingerprint"], "run `features` again to rebuild it"))
        if "id" not in table.columns:
            raise InputError("not a feature part", path, column="id")
        tables.append(table.astype({"id": str}))
    table = pd.concat(tables, ignore_index=True).set_index("id")
    if table.index.duplicated().any():
        raise InputError(f"pair {table.index[table.index.duplicated()][0]!r} is in the table twice", parts_dir, column="id")
    ids = frame["id"].astype(str)
    unknown = ~ids.isin(table.index)
    if unknown.any():
        raise InputError(
            f"column 'id': pair {ids[unknown].iloc[0]!r} is not in the feature table (built from another file?)", parts_dir
        )
    columns = [c for c in table.columns if c.split("__", 1)[0] in groups]
    return table.loc[ids, columns].reset_index(drop=True).set_axis(frame.index)


def read_feature_table(run_dir: str | Path, frame: pd.DataFrame, groups: tuple[str, ...]) -> pd.DataFrame:
    """The feature table of a finished `features` run: its manifest checked (every part and seal it names), then the
    parts (`read_parts`)."""
    manifest = read_run(run_dir, (RunKind.FEATURES,))
    run_file(run_dir, f"{PARTS_DIR}/{INDEX_FILE}", manifest)
    return read_parts(Path(run_dir) / PARTS_DIR, frame, groups)
