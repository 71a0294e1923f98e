"""Size of a Kaggle bundle and the time its entry point spends before scoring (checking every file, installing its
wheels offline into a fresh folder), as JSON.

    python bench/bundle.py bundles/kaggle

Installs with the same command as the bundle's submit.py (pip, --no-index --no-deps --target), into a temporary
folder, so nothing of this environment changes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="a folder written by `python -m competition bundle`")
    args = parser.parse_args(argv)
    bundle = Path(args.bundle).resolve()
    spec = importlib.util.spec_from_file_location("bundle_submit", bundle / "submit.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    started = time.perf_counter()
    entry.verify()
    verify_seconds = time.perf_counter() - started
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", "--target", tmp]
        command += [str(w) for w in wheels]
        installed = subprocess.run(command, capture_output=True, text=True) if wheels else None
        install_seconds = time.perf_counter() - started
        installed_bytes = folder_bytes(Path(tmp))
    parts = {name: folder_bytes(bundle / name) for name in ("project", "wheels")}
    parts["project/runs"] = folder_bytes(bundle / "project" / "runs")
    return {
        "bundle": str(bundle),
        "mib": folder_bytes(bundle) / 2**20,
        "mib_by_part": {k: v / 2**20 for k, v in parts.items()},
        "wheels": [w.name for w in wheels],
        "verify_seconds": verify_seconds,
        "install_seconds": install_seconds,
        "install_ok": installed is None or installed.returncode == 0,
        "installed_mib": installed_bytes / 2**20,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
