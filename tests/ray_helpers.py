"""A backend factory for the Ray engine's tests, importable by Ray's worker processes (`tests.ray_helpers`)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from inference.backends import BackendSpec, open_backend


@dataclass(frozen=True)
class DiesOnce:
    """Opens the real backend; the first actor to score `die_after` batches kills its own process (kill -9),
    once per marker file, as a node lost mid-run would."""

    spec: BackendSpec
    marker: str
    die_after: int = 2

    def __call__(self, device: str, threads: int | None = None):
        backend = open_backend(self.spec, device, threads)
        marker, die_after = Path(self.marker), self.die_after

        class Dying:
            scored = 0

            def score(self, sequences):
                Dying.scored += 1
                if Dying.scored >= die_after and not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)
                return backend.score(sequences)

        return Dying()
