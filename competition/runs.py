"""Reading another run: the one way a command takes another run's predictions or recipe as its input.

The run's manifest is checked first (every file it names, by SHA-256: a torn, truncated or hand-edited run is a
one-line error), then its kind, and only files the manifest names are read.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd

from competition.errors import InputError
from competition.predictions import OOF_FILE, load_predictions
from competition.rundir import CONFIG_FILE, RunKind, read_manifest


def read_run(run_dir: str | Path, kinds: tuple[RunKind, ...] = ()) -> dict:
    """The run's manifest after checking every file it names, and that the run is of one of `kinds` (any when empty)."""
    manifest = read_manifest(run_dir)
    if kinds and manifest.get("kind") not in kinds:
        wanted = " or ".join(repr(str(k)) for k in kinds)
        raise InputError(f"this is a {manifest.get('kind')!r} run, not a {wanted} run", run_dir)
    return manifest


def run_facts(manifest: dict) -> dict:
    facts = manifest.get("facts", {})
    return facts if isinstance(facts, dict) else {}


def run_file(run_dir: str | Path, name: str, manifest: dict) -> Path:
    """A file of a checked run; one the manifest does not name was not written by the run and is not read."""
    if name not in manifest["files"]:
        raise InputError(f"the run has no {name} (its manifest names none)", run_dir)
    return Path(run_dir) / name


def run_predictions(run_dir: str | Path, name: str = OOF_FILE, kinds: tuple[RunKind, ...] = ()) -> pd.DataFrame:
    """Another run's prediction file (oof.parquet by default), checked: the manifest, then the probabilities."""
    manifest = read_run(run_dir, kinds)
    return load_predictions(run_file(run_dir, name, manifest))


def run_config(run_dir: str | Path, kinds: tuple[RunKind, ...] = ()) -> dict:
    """The config a run was made with (its config.toml, as data)."""
    manifest = read_run(run_dir, kinds)
    path = run_file(run_dir, CONFIG_FILE, manifest)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise InputError(f"the run's {CONFIG_FILE} is not readable TOML", run_dir) from None
