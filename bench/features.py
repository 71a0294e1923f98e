"""Feature-extraction speed, the cost of each feature group, and full-CV wall time, printed as JSON.

    python bench/features.py [--data ../shared/data/arena-bench-pairs/train.csv] [--repeats 3] [--unique-texts] [--cv]

`rows_per_s` is the cold figure: the first extraction in a fresh process with no cache (loading the
CSV excluded, reported apart). CPU seconds are printed too: on a shared machine they move less than
wall time. `group_costs_s` times the shared text frame (joined texts, ids, word sets) and then each
group alone on it, one after another on a warm process: the groups' sum exceeds the whole build, which
runs two groups at a time. Text shared by several rows is measured once, and on arena-bench-pairs each
answer sits in 12 rows: `--unique-texts` also times a copy whose every prompt and answer is made distinct
(a row number prefixed, so each row is also its own prompt), as in a file without repeated texts. `--cv` adds the wall time of the full
grouped 5-fold `cv` with the default config.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from competition.config import load_config  # noqa: E402
from competition.folds import prompt_groups  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402
from features.registry import DEFAULT_GROUPS, FEATURE_GROUPS, build_features  # noqa: E402
from features.text import PARTS, text_frame  # noqa: E402
from stages.training import run_cv, training_config  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def group_costs(frame: pd.DataFrame) -> dict[str, float]:
    tf, text_s, _ = timed(lambda: text_frame(frame))
    costs = {"text_frame": text_s}
    for name in DEFAULT_GROUPS:
        costs[name] = timed(lambda name=name: FEATURE_GROUPS[name].compute(tf))[1]
    return {name: round(seconds, 4) for name, seconds in costs.items()}


def with_unique_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with the row number prefixed to each part's first turn: every prompt is then its own group."""
    out = frame.drop(columns=["question_id"], errors="ignore")
    for part in PARTS:
        out[part] = [[f"{i} {turns[0] or ''}", *turns[1:]] for i, turns in enumerate(frame[part])]
    out["group"] = prompt_groups(out).to_numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unique-texts", action="store_true", help="also time a copy where no text repeats")
    parser.add_argument("--cv", action="store_true", help="also time the full grouped 5-fold cv")
    args = parser.parse_args()
    frame, load_s, _ = timed(lambda: load_arena_csv(args.data, require_labels=True))
    frame["group"] = prompt_groups(frame).to_numpy()
    runs = [timed(lambda: build_features(frame, DEFAULT_GROUPS, cache_dir=None)) for _ in range(max(1, args.repeats))]
    table, cold_s, cold_cpu = runs[0]
    best_s = min(r[1] for r in runs)
    report = {
        "rows": len(frame),
        "distinct_texts": int(pd.concat([frame[p].map(tuple) for p in PARTS]).nunique()),
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
        "group_costs_s": group_costs(frame),
    }
    if args.unique_texts:
        unique = with_unique_texts(frame)
        _, unique_s, unique_cpu = timed(lambda: build_features(unique, DEFAULT_GROUPS, cache_dir=None))
        report.update(
            unique_texts_rows_per_s=round(len(frame) / unique_s),
            unique_texts_s=round(unique_s, 3),
            unique_texts_cpu_s=round(unique_cpu, 3),
            unique_texts_group_costs_s=group_costs(unique),
        )
    if args.cv:
        overrides = {"data": {"train": args.data, "test": ""}, "features": {"cache_dir": ""}, "name": "bench_cv"}
        cfg = load_config(training_config("lgbm"), None, [overrides])
        run, cv_s, cv_cpu = timed(lambda: run_cv(cfg, write=False))
        log_loss = run.result.summary()["log_loss"]
        report.update(cv_wall_s=round(cv_s, 1), cv_cpu_s=round(cv_cpu, 1), cv_log_loss=round(log_loss, 4))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
