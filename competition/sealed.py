"""Sealed files: a file committed on its own, before its run is a unit (a feature part, an inference shard, a plan, a
fold table, a cache entry, a checkpoint), with its SHA-256 and what it was made for in a seal beside it.

`<name>.sha256` holds {"sha256": ..., "for": ...}; "for" names what decides the file's content (a plan's fingerprint,
a data key), so a piece left by another plan is told apart from one of this plan even when its index was lost. The
file is written (atomically) before its seal and the old seal is removed first, so a kill at any moment leaves the
file either sealed for what it holds or unsealed, never sealed over other bytes. A reader calls `check_sealed`; a
resume asks `seal_state` and rebuilds what is not "sealed" where that is safe (the piece is derived from inputs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from competition.atomic import write_atomic, write_text_atomic
from competition.errors import InputError
from competition.rundir import file_digest

SEAL_SUFFIX = ".sha256"
SEALED, ABSENT, UNSEALED, CHANGED, FOREIGN = "sealed", "absent", "unsealed", "changed", "foreign"
WHY = {
    ABSENT: "is missing",
    UNSEALED: "has no seal (interrupted before it was sealed, or written by another version)",
    CHANGED: "does not match its seal (changed or torn)",
    FOREIGN: "was made for other inputs or settings",
}


def seal_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SEAL_SUFFIX)


def write_sealed(path: str | Path, write: Callable[[Path], object], made_for: str = "") -> Path:
    """Writes `path` atomically with `write(tmp)`, then its seal."""
    path = Path(path)
    seal_path(path).unlink(missing_ok=True)
    write_atomic(path, write)
    seal(path, made_for)
    return path


def seal(path: str | Path, made_for: str = "") -> Path:
    """Seals a file already written in place (atomically, by its own writer)."""
    path = Path(path)
    return write_text_atomic(seal_path(path), json.dumps({"sha256": file_digest(path), "for": made_for}))


def seal_state(path: str | Path, made_for: str | None = "") -> str:
    """SEALED, or why not: ABSENT, UNSEALED, CHANGED, FOREIGN (made for something else; `made_for=None`: any)."""
    path = Path(path)
    if not path.is_file():
        return ABSENT
    try:
        saved = json.loads(seal_path(path).read_text(encoding="utf-8"))
        digest, purpose = str(saved["sha256"]), str(saved["for"])
    except FileNotFoundError:
        return UNSEALED
    except (OSError, ValueError, KeyError, TypeError):
        return CHANGED
    if file_digest(path) != digest:
        return CHANGED
    return SEALED if made_for is None or purpose == made_for else FOREIGN


def check_sealed(path: str | Path, made_for: str | None = "", hint: str = "") -> Path:
    """`path` after checking its seal; anything else is one line naming the file."""
    state = seal_state(path, made_for)
    if state != SEALED:
        raise InputError(f"{WHY[state]}{f' ({hint})' if hint else ''}", path)
    return Path(path)


def discard(path: str | Path) -> None:
    """Removes a file and its seal (a damaged piece about to be rebuilt)."""
    seal_path(path).unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)
