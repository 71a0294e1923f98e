"""Run directories: written as a unit, described by a manifest, checked when read.

A command stages its files in a temporary sibling folder and renames it into place, so a run directory
is either the old one or the new one, never a mix. `manifest.json` names every file of the unit with its
SHA-256; loading a run checks it, so a torn, truncated or hand-edited run is an error, not a crash.
Sub-directories the new unit does not write (a model saved by `fit` beside the `cv` files, the folds of a
resumable run) are carried over from the old directory.

The manifest seals itself too: its last field is the SHA-256 of everything before it, so a hand-edited fact (a fold
list, a kind) is caught like a changed file. Files a run reads back before it is finished (feature parts, inference
shards, fold tables, caches) are sealed one by one instead (the sealed files below).

Outputs never overwrite inputs: `check_outputs` refuses an output path that is an input, inside an input
folder, or a folder holding an input; and before any work it checks that every output can be written at all
(its parent is a folder, the folder takes a file, the disk has room).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from competition.atomic import write_atomic, write_text_atomic
from competition.config import save_config
from competition.errors import InputError

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.toml"
FORMAT = "arena-preference-run/2"  # /2: the manifest carries its own digest
DIGEST_KEY = "digest"
MIN_FREE_BYTES = 64 << 20  # an output on a disk with less room than this is refused before any work
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

    def output_files(self) -> list[str | Path | None]: ...


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def value_digest(value) -> str:
    """SHA-256 of a settings-like value (JSON with sorted keys; anything else by its text): a fingerprint."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


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


def _body_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def write_manifest(directory: str | Path, kind: str, facts: dict | None = None, adopted: dict[str, str] | None = None) -> Path:
    """Names every file of the unit in `directory` with its hash (and `adopted`: files the unit takes over from the
    folder it replaces, by relative path); sealed with its own digest, written last and atomically."""
    directory = Path(directory)
    files = {str(p.relative_to(directory)): file_digest(p) for p in _unit_files(directory)} | dict(adopted or {})
    manifest = {"format": FORMAT, "kind": kind, "files": dict(sorted(files.items())), **({"facts": facts} if facts else {})}
    manifest[DIGEST_KEY] = _body_digest(manifest)
    return write_text_atomic(directory / MANIFEST_FILE, json.dumps(manifest, indent=1))


def _sealed_manifest(directory: Path) -> dict:
    """The manifest as data after checking its own digest (not yet the files it names)."""
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        dict(manifest["files"])
        found = manifest.get("format")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise InputError("unreadable manifest", path) from None
    except OSError as err:
        raise InputError(f"cannot read the manifest ({err.strerror or type(err).__name__})", path) from None
    if found != FORMAT:
        raise InputError(f"unsupported run format {found!r} (this version reads {FORMAT}; run the command again)", path)
    if manifest.get(DIGEST_KEY) != _body_digest(manifest):
        raise InputError("the manifest does not match its own digest (edited or torn)", path)
    return manifest


def read_manifest(directory: str | Path, kind: str | None = None) -> dict:
    """The manifest of a unit after checking every file it names; InputError when anything is off."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("run directory not found", directory)
    if not (directory / MANIFEST_FILE).exists():
        raise InputError(f"no {MANIFEST_FILE}: not a finished run (interrupted, or written by another version)", directory)
    manifest = _sealed_manifest(directory)
    if kind is not None and manifest.get("kind") != kind:
        raise InputError(f"this is a {manifest.get('kind')!r} run, not a {str(kind)!r} run", directory)
    for name, digest in manifest["files"].items():
        file = directory / name
        if ".." in Path(name).parts or not file.is_file():
            raise InputError(f"file {name!r} named by the manifest is missing", directory)
        if file_digest(file) != digest:
            raise InputError(f"file {name!r} does not match the manifest (changed or torn)", directory)
    return manifest


def adopted_files(target: Path, folders: tuple[str, ...]) -> dict[str, str]:
    """Hashes of the files in `target`'s sub-folders `folders` (built before the unit, e.g. feature parts): a unit that
    adopts them names them in its manifest, and the swap carries them over."""
    files = {}
    for folder in folders:
        if (target / folder).is_dir():
            files |= {str(p.relative_to(target)): file_digest(p) for p in _unit_files(target / folder)}
    return files


@contextmanager
def staged_unit(target: str | Path, kind: str, facts: dict | None = None, adopt: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yields an empty staging folder; on success writes its manifest and swaps it in for `target`.

    On any error the staging folder is removed and `target` is left exactly as it was. `adopt` names sub-folders of
    `target` written before the unit (and checked by the caller) that the unit's manifest covers.
    """
    target = Path(target)
    check_run_target(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    try:
        yield staging
        write_manifest(staging, kind, facts, adopted_files(target, adopt))
        os.chmod(staging, 0o755)
        swap_in(staging, target, kind)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def run_kind(directory: str | Path) -> str | None:
    """The kind its manifest names, or None for a folder without a manifest; a damaged manifest is an InputError."""
    if not (Path(directory) / MANIFEST_FILE).exists():
        return None
    return _sealed_manifest(Path(directory)).get("kind")


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


def check_writable(path: str | Path, is_file: bool = False) -> None:
    """InputError unless `path` (a folder, or with `is_file` a file) can be written: no parent of it is a file, it is
    not a file where a folder goes (nor a folder where a file goes), its nearest existing folder takes a new file
    (tried, then removed: permissions alone do not tell, e.g. /proc, /sys or a read-only mount) and its disk has room."""
    target = _resolved(path)
    folder = target
    while not folder.exists():
        folder = folder.parent
    if folder == target:
        if is_file and target.is_dir():
            raise InputError("output file is a folder (name a file)", path)
        if not is_file and not target.is_dir():
            raise InputError("output path exists and is not a directory", path)
        folder = target.parent if is_file else target
    elif not folder.is_dir():
        raise InputError(f"cannot write here: {str(folder)!r} is a file, not a folder", path)
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"cannot write in {str(folder)!r} ({err.strerror or type(err).__name__})", path) from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise InputError(f"only {free >> 20} MiB free on the disk of {str(folder)!r} (at least {MIN_FREE_BYTES >> 20} MiB)", path)


def check_outputs(
    outputs: list[str | Path | None],
    inputs: list[str | Path | None],
    run_dir: str | Path | None = None,
    kind: str = "",
    files: list[str | Path | None] = (),
) -> None:
    """Before any work: InputError when an output would overwrite or sit inside an input, or would contain one; when
    an output cannot be written (`check_writable`; `outputs` and `run_dir` are folders, `files` are files); with
    `run_dir`, also when that folder is something a `kind` unit may not replace."""
    ins = [_resolved(p) for p in inputs if p]
    folders = [o for o in ([run_dir] if run_dir is not None else []) + list(outputs) if o]
    for out in [*folders, *(f for f in files if f)]:
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
    for out in folders:
        check_writable(out)
    for out in (f for f in files if f):
        check_writable(out, is_file=True)


def check_run(cfg: StageConfig, target: str | Path | None = None, kind: RunKind | None = None) -> None:
    """Before any work: the run's folder (or `target`, a unit inside it), its side outputs (fold tables, caches) and
    output files (a submission) may be written without touching an input, can be written at all, and the folder may
    take a unit of this kind."""
    check_outputs(cfg.side_outputs(), cfg.inputs(), target or cfg.run_dir, kind or cfg.KIND, cfg.output_files())


@contextmanager
def run_unit(
    cfg: StageConfig,
    facts: dict | None = None,
    target: str | Path | None = None,
    kind: RunKind | None = None,
    adopt: tuple[str, ...] = (),
) -> Iterator[Path]:
    """The one way a stage writes its run: checked, staged, its config saved beside the outputs, then the manifest and
    the swap into place (competition/rundir.py's unit). Yields the staging folder to write the outputs into; `adopt`
    names sub-folders the stage built in the run's folder before (checked by it), which the manifest then covers."""
    target, kind = Path(target or cfg.run_dir), kind or cfg.KIND
    check_run(cfg, target, kind)
    with staged_unit(target, kind, facts, adopt) as staging:
        save_config(cfg, staging / CONFIG_FILE)
        yield staging


# ---------------------------------------------------------------------------------------------- sealed files
# Sealed files: a file committed on its own, before its run is a unit (a feature part, an inference shard, a plan, a
# fold table, a cache entry, a checkpoint), with its SHA-256 and what it was made for in a seal beside it.
#
# `<name>.sha256` holds {"sha256": ..., "for": ...}; "for" names what decides the file's content (a plan's fingerprint,
# a data key), so a piece left by another plan is told apart from one of this plan even when its index was lost. The
# file is written (atomically) before its seal and the old seal is removed first, so a kill at any moment leaves the
# file either sealed for what it holds or unsealed, never sealed over other bytes. A reader calls `check_sealed`; a
# resume asks `seal_state` and rebuilds what is not "sealed" where that is safe (the piece is derived from inputs).

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
