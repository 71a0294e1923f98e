"""Loader for the Kaggle LMSYS CSV format and its real-world mess.

Text columns hold JSON lists of turns. Each becomes a Python list of `str | None`:
`null` items stay None, text that is not valid JSON is kept whole as one turn (and counted),
lone surrogates and bytes that are not UTF-8 become U+FFFD (counted in one warning).
Labels become one class id in `label` (a=0, b=1, tie=2).
"""

from __future__ import annotations

import codecs
import json
import logging
import lzma
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import LABEL_COLUMNS, MODEL_COLUMNS, TEXT_COLUMNS

log = logging.getLogger(__name__)

ID_COLUMN = "id"
# pandas reads these compressed CSVs directly (by file name), as it does Kaggle's plain ones.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zip", ".zst")
# Byte-order marks of encodings pandas would read as garbage (UTF-32 before UTF-16: it starts with the same bytes).
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))

# Bytes that are not UTF-8 (a latin-1 file, say) become U+FFFD and are counted, so the file gets one warning.
_undecodable = threading.local()


def _count_and_replace(err: UnicodeDecodeError) -> tuple[str, int]:
    _undecodable.count = getattr(_undecodable, "count", 0) + (err.end - err.start)
    return "\ufffd", err.end


_COUNTING_REPLACE = "arena_count_replace"
codecs.register_error(_COUNTING_REPLACE, _count_and_replace)


@dataclass
class ParseReport:
    """Counts of repaired cells per column, summarised once per file instead of once per row."""

    invalid_json: dict[str, int] = field(default_factory=dict)
    null_turns: dict[str, int] = field(default_factory=dict)
    surrogates: dict[str, int] = field(default_factory=dict)

    def add(self, other: ParseReport) -> None:
        for name, counts in vars(other).items():
            mine = getattr(self, name)
            for col, n in counts.items():
                mine[col] = mine.get(col, 0) + n

    def summary(self) -> str:
        parts = [f"{name} {col}={n}" for name, counts in vars(self).items() for col, n in counts.items() if n]
        return "; ".join(parts)


def _clean(text: str) -> tuple[str, bool]:
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), True


def parse_turns(cell: object) -> tuple[list[str | None], bool]:
    """One text cell → list of turns, and whether it was valid JSON."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return [None], True
    raw = str(cell)
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return [raw], False
    if isinstance(value, list):
        return [None if t is None else t if isinstance(t, str) else json.dumps(t) for t in value] or [None], True
    if value is None:
        return [None], True
    return [value if isinstance(value, str) else json.dumps(value)], True


def parse_column(values: pd.Series, column: str, report: ParseReport) -> list[list[str | None]]:
    parsed, invalid, nulls, repaired = [], 0, 0, 0
    for cell in values:
        turns, ok = parse_turns(cell)
        invalid += not ok
        cleaned = []
        for turn in turns:
            if turn is None:
                nulls += 1
                cleaned.append(None)
            else:
                text, fixed = _clean(turn)
                repaired += fixed
                cleaned.append(text)
        parsed.append(cleaned)
    for counts, n in ((report.invalid_json, invalid), (report.null_turns, nulls), (report.surrogates, repaired)):
        counts[column] = counts.get(column, 0) + n
    return parsed


def _check_plain_text(path: Path) -> None:
    """A plain (uncompressed) CSV must be byte-oriented text: no wide encoding, no binary content."""
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError as err:
        raise InputError(f"cannot read the file ({err.strerror or type(err).__name__})", path) from None
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            raise InputError(f"file is {encoding} encoded (save it as UTF-8)", path)
    if b"\x00" in head:
        # ASCII text in UTF-16 without a byte-order mark: every other byte is zero
        if max(head[0::2].count(0), head[1::2].count(0)) > len(head) // 4:
            raise InputError("file looks UTF-16 encoded (save it as UTF-8)", path)
        raise InputError("not a CSV (binary content)", path)


# Every cell as text, as written: empty strings stay empty, "NA" stays "NA".
READ_OPTIONS = {"dtype": str, "keep_default_na": False, "na_values": [], "encoding_errors": _COUNTING_REPLACE}
READ_ERRORS = (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile)


def check_readable(path: Path) -> None:
    """The checks before pandas opens the file: it exists, is a non-empty file, and a plain one is text."""
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, not a CSV file", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    if not path.name.endswith(COMPRESSED_SUFFIXES):
        _check_plain_text(path)


@contextmanager
def csv_errors(path: Path):
    """What pandas (or a decompressor) raises on a file it cannot read, as one InputError line."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise InputError("file is empty", path) from None
    except READ_ERRORS as err:
        raise InputError(f"not a readable CSV ({str(err).splitlines()[0] if str(err) else type(err).__name__})", path) from None


def start_counting_undecodable() -> None:
    _undecodable.count = 0


def warn_undecodable(path: Path) -> None:
    if _undecodable.count:
        log.warning("%s: %d bytes are not valid UTF-8 (a latin-1 file?); each was replaced by U+FFFD", path, _undecodable.count)


def read_csv_checked(path: Path) -> pd.DataFrame:
    check_readable(path)
    start_counting_undecodable()
    with csv_errors(path):
        frame = pd.read_csv(path, **READ_OPTIONS)
    if len(frame) == 0:
        raise InputError("file has a header but no rows", path)
    warn_undecodable(path)
    return frame


def check_ids(ids: pd.Series, path: str | Path | None, column: str = ID_COLUMN) -> None:
    """No empty id, then no repeated one (the row named is the repeat)."""
    ids = ids.astype(str)
    empty = np.flatnonzero(ids.str.strip().eq("").to_numpy())
    if len(empty):
        raise InputError("empty id", path, int(empty[0]) + 1, column)
    dup = np.flatnonzero(ids.duplicated().to_numpy())
    if len(dup):
        raise InputError(f"duplicate id {ids.iloc[dup[0]]!r}", path, int(dup[0]) + 1, column)


def check_columns(columns, path: Path, require_labels: bool) -> None:
    required = [ID_COLUMN, *TEXT_COLUMNS, *(LABEL_COLUMNS if require_labels else ())]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"missing required column (found {', '.join(columns[:12])})", path, column=missing[0])


def labels_from_columns(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """Class index per row (a=0, b=1, tie=2) from the three label columns, read as text; a row that is
    not one-hot is an InputError naming the file, row and column."""
    values = np.zeros((len(frame), 3), dtype=np.float64)
    for j, col in enumerate(LABEL_COLUMNS):
        numeric = pd.to_numeric(frame[col].str.strip(), errors="coerce").to_numpy()
        bad = np.flatnonzero(~np.isin(numeric, (0.0, 1.0)))
        if len(bad):
            raise InputError(f"label must be 0 or 1, got {frame[col].iloc[bad[0]]!r}", path, int(bad[0]) + 1, col)
        values[:, j] = numeric
    not_one_hot = np.flatnonzero(values.sum(axis=1) != 1)
    if len(not_one_hot):
        raise InputError(
            "labels are not one-hot (exactly one winner column must be 1)", path, int(not_one_hot[0]) + 1, LABEL_COLUMNS[0]
        )
    return values.argmax(axis=1).astype(np.int64)


def load_arena_csv(path: str | Path, require_labels: bool = False, max_rows: int | None = None) -> pd.DataFrame:
    """Reads one arena CSV; raises InputError (file, row, column) on anything the task cannot use.

    Labels are parsed when all three label columns are present; `require_labels` makes them mandatory.
    """
    path = Path(path)
    frame = read_csv_checked(path)
    check_columns(list(frame.columns), path, require_labels)
    if max_rows is not None:
        frame = frame.iloc[:max_rows]
    check_ids(frame[ID_COLUMN], path)
    out = parse_rows(frame, path, ParseReport())
    warn_repaired(path, out.attrs["parse_report"])
    return out


def parse_rows(frame: pd.DataFrame, path: Path, report: ParseReport) -> pd.DataFrame:
    """Checked raw rows (text cells) as the task reads them: turns as lists, labels as class ids."""
    out = pd.DataFrame({ID_COLUMN: frame[ID_COLUMN].to_numpy()})
    for col in TEXT_COLUMNS:
        out[col] = parse_column(frame[col], col, report)
    for col in (*MODEL_COLUMNS, "question_id"):
        if col in frame.columns:
            out[col] = frame[col].to_numpy()
    if all(c in frame.columns for c in LABEL_COLUMNS):
        out["label"] = labels_from_columns(frame, path)
    out.attrs["parse_report"] = report
    return out


def warn_repaired(path: Path, report: ParseReport) -> None:
    if report.summary():
        log.warning("%s: repaired cells: %s", path, report.summary())


def append_extra(train: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """Appends extra labelled rows; an extra row is dropped when its id or its (prompt, responses)
    already appear in train or earlier in extra. Training rows are never dropped."""
    if "label" not in extra.columns:
        raise InputError("extra data has no label columns", column=LABEL_COLUMNS[0])

    def content_key(frame: pd.DataFrame) -> pd.Series:
        return frame[list(TEXT_COLUMNS)].map(json.dumps).agg("\x1f".join, axis=1)

    extra_keys = content_key(extra)
    seen = extra_keys.isin(set(content_key(train))) | extra[ID_COLUMN].isin(set(train[ID_COLUMN]))
    keep = ~(seen | extra_keys.duplicated() | extra[ID_COLUMN].duplicated())
    dropped = int((~keep).sum())
    if dropped:
        log.warning("extra data: dropped %d rows already present (same id or same texts)", dropped)
    return pd.concat([train, extra[keep.to_numpy()]], ignore_index=True)
