"""User-facing input errors: one line naming file, row and column; the CLI prints them without a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input the user can fix. `str()` is the whole message, on one line.

    Rows are numbered from 1 over data rows (the header is not a row).
    """

    def __init__(self, message: str, path: str | Path | None = None, row: int | None = None, column: str | None = None):
        parts = []
        if path is not None:
            parts.append(str(path))
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        super().__init__(" ".join(text.split()))
        self.path, self.row, self.column = path, row, column
