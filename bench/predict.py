"""`predict` at scale: peak memory and rows/s on a synthetic test file, and the chunked output against the
in-memory path, printed as JSON.

    python bench/predict.py [--rows 1000000] [--equal-rows 100000] [--chunk-rows 20000] [--work runs/bench_predict]

The test file is built from the development pairs (Kaggle's test format: id, prompt, response_a, response_b):
copy k of the pairs marks each prompt with "copy k: ", so the copies are distinct prompts, each scattered over
its copy of the file as arena-bench-pairs is. It is written under --work (never committed) and reused when its
size matches. The model is LightGBM with the default config fitted on the embedded sample. Every timed
command runs as its own process: its peak RSS is the kernel's (getrusage of the finished child).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TEST_COLUMNS = ["id", "prompt", "response_a", "response_b"]
IN_MEMORY = (
    "import sys; from competition.submission import write_submission; from stages.training import predict; "
    "write_submission(sys.argv[2], *predict(sys.argv[1], sys.argv[3]))"
)


def build_test_file(source: str, rows: int, path: Path) -> Path:
    """The first `rows` rows of the development pairs repeated, each copy's prompts made its own."""
    if path.exists() and path.with_suffix(".rows").exists() and path.with_suffix(".rows").read_text() == str(rows):
        return path
    pairs = pd.read_csv(source, dtype=str, keep_default_na=False, usecols=TEST_COLUMNS)[TEST_COLUMNS]
    tmp = path.with_suffix(".tmp")
    written, copy = 0, 0
    while written < rows:
        part = pairs.iloc[: rows - written].copy()
        part["id"] = f"{copy}-" + part["id"]
        part["prompt"] = part["prompt"].str.replace('["', f'["copy {copy}: ', n=1, regex=False)
        part.to_csv(tmp, mode="a" if written else "w", header=not written, index=False)
        written, copy = written + len(part), copy + 1
    os.replace(tmp, path)
    path.with_suffix(".rows").write_text(str(rows))
    return path


def child(argv: list[str], log: Path) -> dict:
    """Runs one command as a child process: its wall seconds and its own peak RSS (os.wait4's usage)."""
    start = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{log.read_text()[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_bytes": usage.ru_maxrss * 1024}


def predict_figures(test: Path, model: Path, submission: Path, chunk_rows: int) -> dict:
    rows = int(test.with_suffix(".rows").read_text())
    argv = ["-m", "competition", "predict", "--model", str(model), "--test", str(test), "--submission", str(submission)]
    run = child([*argv, "--chunk-rows", str(chunk_rows)], submission.with_suffix(".log"))
    size = test.stat().st_size
    return {
        "rows": rows,
        "csv_bytes": size,
        **run,
        "peak_rss_over_csv": round(run["peak_rss_bytes"] / size, 3),
        "rows_per_s": round(rows / run["seconds"]),
        "chunk_rows": chunk_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--equal-rows", type=int, default=100_000, help="rows on which chunked and in-memory outputs are compared"
    )
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument("--work", default="runs/bench_predict")
    args = parser.parse_args()
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    pairs = str((ROOT / args.pairs).resolve())
    model = work / "model_run"
    if not (model / "model").exists():
        child(["-m", "competition", "fit", "--out", str(model), "--set", "features.cache_dir=''"], work / "fit.log")
    out: dict = {"model": "LightGBM, default config, fitted on data/sample/train.csv.xz", "cores": os.cpu_count()}
    small = build_test_file(pairs, args.equal_rows, work / f"test_{args.equal_rows}.csv")
    chunked = predict_figures(small, model, work / "chunked.csv", args.chunk_rows)
    whole = child(["-c", IN_MEMORY, str(model), str(work / "in_memory.csv"), str(small)], work / "in_memory.log")
    out["equal_rows"] = {
        "chunked": chunked,
        "in_memory": {**whole, "rows_per_s": round(args.equal_rows / whole["seconds"])},
        "identical_bytes": (work / "chunked.csv").read_bytes() == (work / "in_memory.csv").read_bytes(),
    }
    big = build_test_file(pairs, args.rows, work / f"test_{args.rows}.csv")
    out["scale"] = predict_figures(big, model, work / "big.csv", args.chunk_rows)
    out["scale"]["under_2x_csv"] = out["scale"]["peak_rss_bytes"] <= 2 * out["scale"]["csv_bytes"]
    out["scale"]["under_4gb"] = out["scale"]["peak_rss_bytes"] <= 4 * 2**30
    out["load_average"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
