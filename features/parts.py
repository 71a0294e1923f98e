"""Feature tables for files larger than memory: built in blocks of whole prompts (groups that look across the
answers to one prompt see all of them) and written as parquet parts, locally or as Ray tasks; read back in the
file's row order.

A part is `part-<k>.parquet` holding `id` and the feature columns of its block; it is written atomically, so a
killed build resumes by skipping the parts already there. `parts.json` names the groups, the block size and a
fingerprint of the file's ids, and parts of another file or settings are refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import atomic_path, write_text_atomic
from competition.errors import InputError
from features.registry import build_features

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


def build_block(frame: pd.DataFrame, groups: tuple[str, ...], path: str) -> str:
    """One part: the block's feature table with its ids, written atomically (run as a Ray task, or here)."""
    table = build_features(frame.reset_index(drop=True), groups, None)
    table.insert(0, "id", frame["id"].astype(str).to_numpy())
    with atomic_path(Path(path)) as tmp:
        table.to_parquet(tmp, index=False)
    return path


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
    if index.exists() and json.loads(index.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
        raise InputError("these parts were built from another file or other groups/block size (choose another --out)", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = prompt_blocks(group_of_row, rows_per_block)
    meta = {"fingerprint": fingerprint, "content": content_fingerprint(frame), "groups": list(groups), "parts": len(blocks)}
    write_text_atomic(index, json.dumps(meta | {"rows": len(frame)}))
    paths = [out_dir / f"part-{k:05d}.parquet" for k in range(len(blocks))]
    missing = [k for k, p in enumerate(paths) if not p.exists()]
    if engine == "ray":
        from competition.cluster import connect

        ray = connect(address, 2)
        task = ray.remote(max_retries=3)(build_block)
        ray.get([task.remote(frame.iloc[blocks[k]], groups, str(paths[k])) for k in missing])
    else:
        for k in missing:
            build_block(frame.iloc[blocks[k]], groups, str(paths[k]))
    return {"parts": len(blocks), "built": len(missing), "skipped": len(blocks) - len(missing)}


def read_parts(parts_dir: str | Path, frame: pd.DataFrame, groups: tuple[str, ...]) -> pd.DataFrame:
    """The feature table of `frame` (its row order) from the parts in `parts_dir`; they must cover `groups`."""
    parts_dir = Path(parts_dir)
    if (parts_dir / PARTS_DIR).is_dir():  # a `features` run directory
        parts_dir = parts_dir / PARTS_DIR
    index = parts_dir / INDEX_FILE
    if not index.is_file():
        raise InputError(f"no {INDEX_FILE}: not a feature table built by `features`", parts_dir)
    meta = json.loads(index.read_text(encoding="utf-8"))
    absent = [g for g in groups if g not in meta["groups"]]
    if absent:
        raise InputError(f"the feature table has no group {absent[0]!r} (built with {', '.join(meta['groups'])})", parts_dir)
    if meta.get("content") != content_fingerprint(frame):
        raise InputError("the feature table was built from other rows (another file, or another --max-rows)", parts_dir)
    paths = [parts_dir / f"part-{k:05d}.parquet" for k in range(meta["parts"])]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InputError(f"{len(missing)} of {len(paths)} parts are missing (run `features` again to finish them)", parts_dir)
    table = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True).set_index("id")
    ids = frame["id"].astype(str)
    unknown = ~ids.isin(table.index)
    if unknown.any():
        raise InputError(
            f"column 'id': pair {ids[unknown].iloc[0]!r} is not in the feature table (built from another file?)", parts_dir
        )
    columns = [c for c in table.columns if c.split("__", 1)[0] in groups]
    return table.loc[ids, columns].reset_index(drop=True).set_axis(frame.index)
