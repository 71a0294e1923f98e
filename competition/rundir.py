"""Run directories: written as a unit, described by a manifest, checked when read.

A command stages its files in a temporary sibling folder and renames it into place, so a run directory
is either the old one or the new one, never a mix. `manifest.json` names every file of the unit with its
SHA-256; loading a run checks it, so a torn, truncated or hand-edited run is an error, not a crash.
Sub-directories the new unit does not write (a model saved by `fit` beside the `cv` files, the folds of a
resumable run) are carried over from the old directory.

Outputs never overwrite inputs: `check_outputs` refuses an output path that is an input, inside an input
folder, or a folder holding an input.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from competition.atomic import write_text_atomic
from competition.config import save_config
from competition.errors import InputError

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.toml"
FORMAT = "arena-preference-run/1"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunKind(StrEnum):
    """What a run directory holds: written in its manifest, checked by every reader."""

    CV = "cv"  # cross-validated out-of-fold (and test) predictions of one model family
    MODEL = "model"  # a fitted model of any family
    FOLD = "fold"  # one finished fold of a cv run
    ABLATION = "ablation"
    BLEND = "blend"
    INFERENCE = "inference"
    FEATURES = "features"
    LEADERBOARD = "leaderboard"
    PROMPT_LEADERBOARD = "prompt-leaderboard"
    ROUTING = "routing"
    ARENA = "arena"
    DISSECTION = "dissection"
    SUBMIT = "submit"  # a submission's work folder: resumable shards, summary
    BUNDLE = "bundle"  # an offline Kaggle bundle
    RECIPE = "recipe"  # the recipe's blend, report and submission, above its stages' runs
    RECIPE_PLAN = "recipe-plan"  # the fingerprints of the recipe's stages


class StageConfig(Protocol):
    """What every stage's config tells about its run: its kind, where it goes, what it reads and writes beside it."""

    KIND: RunKind

    @property
    def run_dir(self) -> Path: ...

    def inputs(self) -> list[str | Path | None]: ...

    def side_outputs(self) -> list[str | Path | None]: ...


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unit_files(directory: Path) -> list[Path]:
    """Files of the unit: everything below `directory` except nested units (they have their own manifest)."""
    out = []
    for path in sorted(directory.iterdir()):
        if path.is_dir():
            if not (path / MANIFEST_FILE).exists():
                out += _unit_files(path)
        elif path.name != MANIFEST_FILE and not path.name.endswith(".tmp"):
            out.append(path)
    return out


def write_manifest(directory: str | Path, kind: str, facts: dict | None = None) -> Path:
    """Names every file of the unit in `directory` with its hash; written last and atomically."""
    directory = Path(directory)
    files = {str(p.relative_to(directory)): file_digest(p) for p in _unit_files(directory)}
    manifest = {"format": FORMAT, "kind": kind, "files": files, **({"facts": facts} if facts else {})}
    return write_text_atomic(directory / MANIFEST_FILE, json.dumps(manifest, indent=1))


def read_manifest(directory: str | Path, kind: str | None = None) -> dict:
    """The manifest of a unit after checking every file it names; InputError when anything is off."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("run directory not found", directory)
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise InputError(f"no {MANIFEST_FILE}: not a finished run (interrupted, or written by another version)", directory)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
        if manifest.get("format") != FORMAT:
            raise InputError(f"unsupported run format {manifest.get('format')!r} (this version reads {FORMAT})", path)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise InputError("unreadable manifest", path) from None
    if kind is not None and manifest.get("kind") != kind:
        raise InputError(f"this is a {manifest.get('kind')!r} run, not a {str(kind)!r} run", directory)
    for name, digest in files.items():
        file = directory / name
        if ".." in Path(name).parts or not file.is_file():
            raise InputError(f"file {name!r} named by the manifest is missing", directory)
        if file_digest(file) != digest:
            raise InputError(f"file {name!r} does not match the manifest (changed or torn)", directory)
    return manifest


@contextmanager
def staged_unit(target: str | Path, kind: str, facts: dict | None = None) -> Iterator[Path]:
    """Yields an empty staging folder; on success writes its manifest and swaps it in for `target`.

    On any error the staging folder is removed and `target` is left exactly as it was.
    """
    target = Path(target)
    check_run_target(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    try:
        yield staging
        write_manifest(staging, kind, facts)
        os.chmod(staging, 0o755)
        swap_in(staging, target, kind)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def run_kind(directory: str | Path) -> str | None:
    """The kind its manifest names, or None for a folder without a readable manifest."""
    try:
        return json.loads((Path(directory) / MANIFEST_FILE).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_run_target(target: str | Path, kind: str) -> None:
    """A unit may replace only an absent or empty folder, or an earlier unit of the same kind: never a model
    folder with `cv` files, nor a folder of the user's that is not a run."""
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise InputError("output path exists and is not a directory", target)
    if (target / MANIFEST_FILE).exists():
        found = run_kind(target)
        if found != kind:
            raise InputError(
                f"output folder holds a {found!r} run; a {str(kind)!r} run would replace it (choose another --out)", target
            )
        return
    if any(p.is_file() for p in target.iterdir()):
        raise InputError("output folder exists and is not a run directory of this project (choose another --out)", target)


def swap_in(staging: Path, target: Path, kind: str) -> None:
    """Renames `staging` to `target`; sub-directories of the old `target` that staging lacks move across."""
    check_run_target(target, kind)
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / "run")
    os.replace(staging, target)
    for child in (old / "run").iterdir():
        if child.is_dir() and not (target / child.name).exists():
            os.replace(child, target / child.name)
    shutil.rmtree(old, ignore_errors=True)


def safe_name(text: str, limit: int = 60) -> str:
    """A file-name-safe form of a name taken from data (a prompt id, a model name): never a path.

    Characters outside [A-Za-z0-9._-] become '_', leading dots are dropped, and a short hash of the
    original keeps distinct names distinct.
    """
    cleaned = _UNSAFE.sub("_", str(text)).lstrip(".")[:limit] or "x"
    if cleaned == str(text):
        return cleaned
    return f"{cleaned}-{hashlib.sha1(str(text).encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_outputs(
    outputs: list[str | Path | None], inputs: list[str | Path | None], run_dir: str | Path | None = None, kind: str = ""
) -> None:
    """InputError when an output would overwrite or sit inside an input, or would contain one; with `run_dir`,
    also when that folder is something a `kind` unit may not replace."""
    ins = [_resolved(p) for p in inputs if p]
    if run_dir is not None:
        outputs = [run_dir, *outputs]
    for out in (o for o in outputs if o):
        target = _resolved(out)
        for source in ins:
            if target == source:
                raise InputError("output would overwrite an input (choose another output path)", out)
            if source in target.parents:
                raise InputError(f"output would be written inside the input {str(source)!r}", out)
            if target in source.parents:
                raise InputError(f"output folder holds the input {str(source)!r}, which a rerun would replace", out)
    if run_dir is not None:
        check_run_target(run_dir, kind)


def check_run(cfg: StageConfig, target: str | Path | None = None, kind: RunKind | None = None) -> None:
    """Before any work: the run's folder (or `target`, a unit inside it) and its side outputs (fold tables, caches)
    may be written without touching an input, and the folder may take a unit of this kind."""
    check_outputs(cfg.side_outputs(), cfg.inputs(), target or cfg.run_dir, kind or cfg.KIND)


@contextmanager
def run_unit(
    cfg: StageConfig, facts: dict | None = None, target: str | Path | None = None, kind: RunKind | None = None
) -> Iterator[Path]:
    """The one way a stage writes its run: checked, staged, its config saved beside the outputs, then the manifest and
    the swap into place (competition/rundir.py's unit). Yields the staging folder to write the outputs into."""
    target, kind = Path(target or cfg.run_dir), kind or cfg.KIND
    check_run(cfg, target, kind)
    with staged_unit(target, kind, facts) as staging:
        save_config(cfg, staging / CONFIG_FILE)
        yield staging
