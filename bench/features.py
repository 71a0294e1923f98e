"""Feature-extraction speed and full-CV wall time, printed as JSON.

    python bench/features.py [--data ../shared/data/arena-bench-pairs/train.csv] [--repeats 3] [--cv]

`rows_per_s` is the cold figure: the first extraction in a fresh process with no cache (loading the
CSV excluded, reported apart). CPU seconds are printed too: on a shared machine they move less than
wall time. `--cv` adds the wall time of the full grouped 5-fold `cv` with the default config.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from competition.config import load_config  # noqa: E402
from competition.folds import prompt_groups  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402
from features.registry import DEFAULT_GROUPS, build_features  # noqa: E402
from stages.training import run_cv, training_config  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cv", action="store_true", help="also time the full grouped 5-fold cv")
    args = parser.parse_args()
    frame, load_s, _ = timed(lambda: load_arena_csv(args.data, require_labels=True))
    frame["group"] = prompt_groups(frame).to_numpy()
    runs = [timed(lambda: build_features(frame, DEFAULT_GROUPS, cache_dir=None)) for _ in range(max(1, args.repeats))]
    table, cold_s, cold_cpu = runs[0]
    best_s = min(r[1] for r in runs)
    report = {
        "rows": len(frame),
        "columns": table.shape[1],
        "groups": list(DEFAULT_GROUPS),
        "cores": 2,
        "load_csv_s": round(load_s, 3),
        "rows_per_s": round(len(frame) / cold_s),
        "cold_s": round(cold_s, 3),
        "cold_cpu_s": round(cold_cpu, 3),
        "rows_per_s_best_of_repeats": round(len(frame) / best_s),
        "repeats": len(runs),
        "rows_per_s_including_csv_load": round(len(frame) / (cold_s + load_s)),
    }
    if args.cv:
        overrides = {"data": {"train": args.data, "test": ""}, "features": {"cache_dir": ""}, "name": "bench_cv"}
        cfg = load_config(training_config("lgbm"), None, [overrides])
        run, cv_s, cv_cpu = timed(lambda: run_cv(cfg, write=False))
        log_loss = run.result.summary()["log_loss"]
        report.update(cv_wall_s=round(cv_s, 1), cv_cpu_s=round(cv_cpu, 1), cv_log_loss=round(log_loss, 4))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
