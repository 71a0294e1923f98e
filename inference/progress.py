"""Progress of an inference run: rows/s and an ETA measured in padded tokens.

Rows are sorted longest first, so rows/s rises as the run goes on; the ETA therefore follows padded
tokens, which track the work. On a terminal a rich bar; elsewhere (logs, Kaggle) one line per shard.
"""

from __future__ import annotations

import logging
import sys
import time

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger(__name__)


class ProgressDisplay:
    def __init__(self, rows: int, tokens: int, enabled: bool = True):
        self.rows_total, self.tokens_total = rows, tokens
        self.rows = self.tokens = self.shards = 0
        self.start = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty() and rows:
            columns = (
                TextColumn("infer"),
                BarColumn(),
                TextColumn("{task.fields[rows]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self.bar = Progress(*columns, transient=True)
        self.enabled = enabled

    def __enter__(self) -> ProgressDisplay:
        self.start = time.perf_counter()
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("infer", total=self.tokens_total, rows=self.rows_text())
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.rows / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        elapsed = time.perf_counter() - self.start
        if not self.tokens:
            return None
        return elapsed * (self.tokens_total - self.tokens) / self.tokens

    def rows_text(self) -> str:
        return f"{self.rows}/{self.rows_total} rows, {self.rate():.1f} rows/s"

    def update(self, message: tuple) -> None:
        """A worker message: (worker, "batch", rows, padded_tokens) or (worker, "shard", index)."""
        if message[1] == "batch":
            self.rows += message[2]
            self.tokens += message[3]
            if self.bar is not None:
                self.bar.update(self.task, completed=self.tokens, rows=self.rows_text())
        elif message[1] == "shard":
            self.shards += 1
            if self.bar is None and self.enabled:
                eta = self.eta_seconds()
                log.info(
                    "shard %d done (worker %d): %s, ETA %s",
                    message[2],
                    message[0],
                    self.rows_text(),
                    "?" if eta is None else f"{eta:.0f}s",
                )
