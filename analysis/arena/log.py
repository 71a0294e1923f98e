"""The judgments log: every verdict a ranking asked for, appended as it is made, so a killed run resumes and a
finished one repeats exactly without asking a judge twice.

The log is self-verifying. Its first line is a header naming what the verdicts depend on (the data file's and
every judge's identity: file digests and the settings that change a verdict); each later line is one judge's
verdict on one item (prompt or recorded vote) of one pair, chained to the line before by a SHA-256 digest. A
log is read only for the context it was written for (the file is named by the context's digest), so a rerun
with another judge or another data file never reuses a verdict; a line changed by hand breaks the chain and
the log is refused with one line. A torn last line (a kill mid-write: no newline at its end) is cut off and
judged again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from competition.errors import InputError

FORMAT = "arena-judgments/2"
Key = tuple[str, str, str, str]  # (judge, item, first model, second model), first < second


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def context_digest(context: dict) -> str:
    return hashlib.sha256(canonical(context).encode()).hexdigest()


def log_path(folder: str | Path, context: dict) -> Path:
    """Where the log of this context lives inside a run's judgments folder."""
    return Path(folder) / f"{context_digest(context)[:16]}.jsonl"


def _link(previous: str, fields: list) -> str:
    return hashlib.sha256((previous + canonical(fields)).encode()).hexdigest()[:32]


def _checked_verdict(p, where: str, path: Path) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (3,) or not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1.0) > 1e-6:
        raise InputError(f"{where}: a verdict must be three non-negative probabilities summing to 1", path)
    return p


class JudgmentLog:
    """Verdicts by (judge, item, first, second); `path=None` keeps them in memory only."""

    def __init__(self, path: Path | None, context: dict | None = None):
        self.path, self.context = path, context or {}
        self.entries: dict[Key, np.ndarray] = {}
        self.head = context_digest(self.context)
        if path is not None and path.exists():
            self._read()

    def __contains__(self, key: Key) -> bool:
        return key in self.entries

    def __getitem__(self, key: Key) -> np.ndarray:
        return self.entries[key]

    def _read(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) < len(raw):  # a kill mid-write: the torn tail is judged again
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete))
        lines = complete.decode("utf-8", errors="replace").splitlines()
        if not lines:
            return
        try:
            header = json.loads(lines[0])
            intact = header == {"format": FORMAT, "context": self.context, "digest": self.head}
        except ValueError:
            intact = False
        if not intact:
            raise InputError("line 1: the log's header does not name this run's judges and data (changed by hand?)", self.path)
        for number, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
                fields = [entry["judge"], entry["item"], entry["first"], entry["second"], entry["p"]]
                chained = entry["chain"] == _link(self.head, fields)
            except (ValueError, KeyError, TypeError):
                chained = False
            if not chained:
                raise InputError(f"line {number}: the judgments log was changed after it was written (chain broken)", self.path)
            self.head = entry["chain"]
            where = f"line {number}"
            self.entries[tuple(fields[:4])] = _checked_verdict(fields[4], where, self.path)

    def add(self, keys: list[Key], probs: np.ndarray) -> None:
        lines = []
        if self.path is not None and not self.entries and not (self.path.exists() and self.path.stat().st_size):
            lines.append(canonical({"format": FORMAT, "context": self.context, "digest": self.head}))
        for key, p in zip(keys, probs, strict=True):
            fields = [*key, [float(v) for v in p]]
            self.head = _link(self.head, fields)
            self.entries[key] = np.asarray(fields[4], dtype=np.float64)
            lines.append(
                canonical(dict(zip(("judge", "item", "first", "second", "p"), fields, strict=True)) | {"chain": self.head})
            )
        if self.path is not None and lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
