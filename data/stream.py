"""Test files larger than memory: read in chunks of whole prompts, each chunk parsed as `load_arena_csv` would.

Features that look across the answers to one prompt (consensus) need all of a prompt's rows together, and a
file need not keep them together (arena-bench-pairs is shuffled). So a file is read twice:

1. `scan_prompt_chunks` reads the columns that decide ids, labels and prompt groups, makes every check
   `load_arena_csv` makes in the same order (so a bad file gets the same one-line error, before any work), and
   packs whole prompt groups, in order of first appearance, into chunks of about `chunk_rows` rows;
2. `read_prompt_chunks` reads the file again in slices of `READ_ROWS` rows, parses each, and parks each row in
   its chunk's spill file (Arrow IPC, in a temporary folder); then yields the chunks one by one with their
   row numbers. A file of one chunk is parsed whole and never spilled.

Memory then follows `chunk_rows` (plus 8 bytes a row for the plan), not the file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from competition.errors import InputError
from competition.folds import prompt_groups
from competition.labels import LABEL_COLUMNS, TEXT_COLUMNS
from data.loader import (
    ID_COLUMN,
    READ_OPTIONS,
    ParseReport,
    check_columns,
    check_ids,
    check_readable,
    csv_errors,
    labels_from_columns,
    parse_column,
    parse_rows,
    start_counting_undecodable,
    warn_repaired,
    warn_undecodable,
)

READ_ROWS = 5_000  # raw rows pandas hands over at a time
ROW = "row"  # a parsed row's number in the file (0-based)


@dataclass(frozen=True)
class PromptChunks:
    """The plan of a checked file: every row's id (file order) and chunk."""

    path: Path
    ids: pd.Series
    chunk_of_row: np.ndarray
    chunks: int

    @property
    def rows(self) -> int:
        return len(self.ids)


def _raw_slices(path: Path) -> Iterator[pd.DataFrame]:
    with csv_errors(path), pd.read_csv(path, chunksize=READ_ROWS, **READ_OPTIONS) as reader:
        yield from reader


def _group_codes(raw: pd.DataFrame) -> np.ndarray:
    """A 64-bit code of each row's prompt group (two groups sharing a code only share a chunk)."""
    prompts = raw[[c for c in ("prompt", "question_id") if c in raw]].assign(
        prompt=parse_column(raw["prompt"], "prompt", ParseReport())
    )
    return pd.util.hash_array(prompt_groups(prompts).to_numpy(dtype=object))


def scan_prompt_chunks(path: str | Path, chunk_rows: int) -> PromptChunks:
    """Pass 1: the whole file checked, and each row's chunk; raises InputError as `load_arena_csv` does."""
    path = Path(path)
    check_readable(path)
    start_counting_undecodable()
    with csv_errors(path):
        header = list(pd.read_csv(path, nrows=0, **READ_OPTIONS).columns)
    wanted = [c for c in (ID_COLUMN, "prompt", "question_id", *LABEL_COLUMNS) if c in header]
    ids, labels, codes = [], [], []
    # every column is read: with `usecols` pandas lets a row with an extra field pass, the in-memory loader not
    for raw in _raw_slices(path):
        raw = raw[wanted]
        ids.append(raw[ID_COLUMN] if ID_COLUMN in raw else pd.Series("", index=raw.index))
        labels.append(raw[[c for c in LABEL_COLUMNS if c in raw]])
        codes.append(_group_codes(raw) if "prompt" in raw else np.zeros(len(raw), np.uint64))
    ids = pd.concat(ids, ignore_index=True) if ids else pd.Series([], dtype=str)
    if len(ids) == 0:
        raise InputError("file has a header but no rows", path)
    warn_undecodable(path)
    check_columns(header, path, require_labels=False)
    check_ids(ids, path)
    labels = pd.concat(labels, ignore_index=True)
    if len(labels.columns) == len(LABEL_COLUMNS):
        labels_from_columns(labels, path)
    groups, _ = pd.factorize(np.concatenate(codes))  # in order of first appearance
    sizes = np.bincount(groups)
    # a group joins the chunk its first row falls in (numbered densely: a long group may span several)
    _, chunk_of_group = np.unique((np.cumsum(sizes) - sizes) // chunk_rows, return_inverse=True)
    chunk_of_row = chunk_of_group[groups].astype(np.int32)
    return PromptChunks(path, ids, chunk_of_row, int(chunk_of_row.max()) + 1)


def _spill_schema(columns: list[str]) -> pa.Schema:
    turns = pa.list_(pa.string())
    types = {c: turns for c in TEXT_COLUMNS} | {"label": pa.int64(), ROW: pa.int64()}
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])


def _parsed(table: pa.Table) -> pd.DataFrame:
    """A spilled chunk as `load_arena_csv` gives rows: turns as lists of str | None."""
    return pd.DataFrame(
        {c: table.column(c).to_pylist() if c != "label" else table.column(c).to_numpy() for c in table.column_names}
    )


def read_prompt_chunks(plan: PromptChunks) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Pass 2: (row numbers, parsed rows with their prompt `group`) for each chunk, chunk 0 first."""
    report = ParseReport()
    with tempfile.TemporaryDirectory(prefix="arena-chunks-") as spill_dir:
        writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        whole, start = [], 0
        for raw in _raw_slices(plan.path):
            parsed = parse_rows(raw, plan.path, report)
            parsed[ROW] = np.arange(start, start + len(raw))
            start += len(raw)
            if plan.chunks == 1:
                whole.append(parsed)
                continue
            _spill(parsed, plan.chunk_of_row[parsed[ROW].to_numpy()], writers, Path(spill_dir))
        for writer in writers.values():
            writer.close()
        warn_repaired(plan.path, report)
        if plan.chunks == 1:
            yield _with_groups(pd.concat(whole, ignore_index=True))
            return
        for chunk in range(plan.chunks):
            file = Path(spill_dir) / f"chunk-{chunk}.arrow"
            with pa.memory_map(str(file)) as source:
                frame = _parsed(pa.ipc.open_stream(source).read_all())
            file.unlink()
            yield _with_groups(frame)


def _spill(parsed: pd.DataFrame, chunks: np.ndarray, writers: dict, spill_dir: Path) -> None:
    parsed.attrs.clear()  # the parse report is summed apart; Arrow would try to store it
    schema = _spill_schema(list(parsed.columns))
    for chunk in np.unique(chunks):
        part = pa.Table.from_pandas(parsed[chunks == chunk], schema=schema, preserve_index=False)
        if chunk not in writers:
            writers[chunk] = pa.ipc.new_stream(str(spill_dir / f"chunk-{chunk}.arrow"), schema)
        writers[chunk].write_table(part)


def _with_groups(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    rows = frame.pop(ROW).to_numpy()
    frame["group"] = prompt_groups(frame).to_numpy()
    return rows, frame
