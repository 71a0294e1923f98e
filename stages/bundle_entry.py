"""Scores a test file with this bundle, offline (copied by `python -m competition bundle` as the bundle's submit.py).

    python /kaggle/input/<dataset>/submit.py --test /kaggle/input/<competition>/test.csv \\
        --submission /kaggle/working/submission.csv --base-model /kaggle/input/<base model folder>

1. Every file of the bundle is checked against manifest.json (SHA-256); the runs inside are checked again, against
   their own manifests, by the project when it reads them.
2. wheels/*.whl are installed with pip, offline (--no-index --no-deps), into <work>/site: a private folder, never
   the image's site-packages; skipped when the same wheels are already there.
3. `python -m competition submit --config submit.toml ...` runs in a subprocess from project/, with project/ and
   <work>/site first on its path, Hugging Face offline, no bytecode written into the (read-only) bundle. The
   project's top-level packages have generic names (data, models, ...): any installed package they shadow in that
   process is named on stderr before it starts.
Standard library only: it runs before anything is installed. Exit codes are the project's (2: bad input).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
PACKAGES = ("competition", "cli", "stages", "data", "features", "models", "inference", "ensemble", "analysis")


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def verify() -> dict:
    """The bundle's manifest after checking every file it names; exits 2 with one line when anything is off."""
    try:
        manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"{HERE / 'manifest.json'}: unreadable bundle manifest")
    if manifest.get("kind") != "bundle":
        fail(f"{HERE}: not a bundle (its manifest says {manifest.get('kind')!r})")
    for name, expected in files.items():
        path = HERE / name
        if ".." in Path(name).parts or not path.is_file():
            fail(f"{HERE}: bundle file {name!r} is missing")
        if digest(path) != expected:
            fail(f"{HERE}: bundle file {name!r} does not match the manifest (changed or torn)")
    return manifest


def install_wheels(site: Path) -> float:
    """Seconds spent installing wheels/ into `site` (0 when there are none or they are there already)."""
    wheels = sorted((HERE / "wheels").glob("*.whl"))
    marker = site / ".bundle-wheels.json"
    wanted = {w.name: digest(w) for w in wheels}
    if not wheels or (marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted):
        return 0.0
    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-deps",
        "--quiet",
        "--target",
        str(site),
        *map(str, wheels),
    ]
    if subprocess.run(command, env=os.environ | {"PIP_NO_INDEX": "1"}).returncode != 0:
        fail(f"installing the bundled wheels into {site} failed (see pip's message above)")
    marker.write_text(json.dumps(wanted), encoding="utf-8")
    return time.perf_counter() - started


def shadowed() -> list[str]:
    """Our top-level packages that also exist in this interpreter's own path (the image's site-packages)."""
    out = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = spec and (spec.origin or next(iter(spec.submodule_search_locations or []), None))
        if origin and not str(origin).startswith(str(PROJECT)):
            out.append(f"{name} ({origin})")
    return out


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="submit.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", required=True, help="test CSV (id, prompt, response_a, response_b)")
    parser.add_argument("--submission", default="submission.csv", help="submission CSV to write")
    parser.add_argument("--base-model", action="append", default=[], help="folder of a fold model's base (repeatable)")
    parser.add_argument("--work", default="bundle-work", help="writable folder: wheels, resumable shards, summary")
    parser.add_argument("--devices", help="override the bundle's devices (e.g. cpu, gpu:2)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per worker")
    parser.add_argument("--time-budget", type=float, help="seconds after which no shard starts (0: none)")
    parser.add_argument("--fresh", action="store_true", help="discard finished shards instead of resuming")
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks for internal errors")
    args = parser.parse_args(argv)
    verify()
    work = Path(args.work).resolve()
    site = work / "site"
    site.mkdir(parents=True, exist_ok=True)
    seconds = install_wheels(site)
    if seconds:
        print(f"installed the bundled wheels into {site} in {seconds:.1f} s", file=sys.stderr)
    for clash in shadowed():
        print(f"note: the bundle's package shadows an installed one in the scoring process: {clash}", file=sys.stderr)
    command = [sys.executable, "-m", "competition", *(["-v"] if args.verbose else []), "submit", "--config", "submit.toml"]
    command += ["--test", str(Path(args.test).resolve()), "--submission", str(Path(args.submission).resolve())]
    command += ["--out", str(work / "submit")]
    for base in args.base_model:
        command += ["--base-model", str(Path(base).resolve())]
    for flag, value in (("--devices", args.devices), ("--threads", args.threads), ("--time-budget", args.time_budget)):
        if value is not None:
            command += [flag, str(value)]
    command += ["--fresh"] if args.fresh else []
    path = os.pathsep.join([str(PROJECT), str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PIP_NO_INDEX": "1"}
    env = os.environ | offline | {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
    return subprocess.run(command, cwd=PROJECT, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
