"""Cuts the embedded sample (data/sample/) from arena-bench-pairs, split by prompt so train and test share none.

python -m data.make_sample --source ../shared/data/arena-bench-pairs/train.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import write_atomic
from competition.labels import LABEL_COLUMNS, MODEL_COLUMNS, TEXT_COLUMNS

SAMPLE_DIR = Path(__file__).parent / "sample"


def cut_sample(source: Path, n_train_prompts: int, n_test_prompts: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    prompts = np.random.default_rng(seed).permutation(frame["question_id"].unique())
    train_ids = set(prompts[:n_train_prompts])
    test_ids = set(prompts[n_train_prompts : n_train_prompts + n_test_prompts])
    # Like the Kaggle files: no question_id anywhere, and the test file has no labels and no model names.
    train = frame[frame["question_id"].isin(train_ids)][["id", *MODEL_COLUMNS, *TEXT_COLUMNS, *LABEL_COLUMNS]]
    test = frame[frame["question_id"].isin(test_ids)][["id", *TEXT_COLUMNS]]
    return train, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--train-prompts", type=int, default=60)
    parser.add_argument("--test-prompts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    train, test = cut_sample(args.source, args.train_prompts, args.test_prompts, args.seed)
    # xz finds the answers that repeat across a prompt's rows: 60 prompts pack into well under 1 MB.
    for name, part in (("train.csv.xz", train), ("test.csv", test)):
        # The temporary file's name hides the suffix from pandas, so the compression is named here.
        compression = {"method": "xz", "preset": 9} if name.endswith(".xz") else None
        write_atomic(SAMPLE_DIR / name, lambda p, part=part, c=compression: part.to_csv(p, index=False, compression=c))
        print(f"{name}: {len(part)} rows")


if __name__ == "__main__":
    main()
