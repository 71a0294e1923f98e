"""Batches of packed token ids: the one home of the rules that training, the estimator's prediction and batch
inference must share, so a classifier is scored the way it was trained.

- Prediction batches are cut by a budget of padded tokens (rows × longest row), longest rows first, so an
  out-of-memory batch shows up at once and each batch pads little.
- A batch that runs out of memory is split in half and retried (`score_with_backoff`); later batches at least that
  large are split before they are tried. The estimator's prediction and every inference worker share the rule, so
  an out-of-memory error after a fold's training costs a split, not the fold.
- A batch is always right-padded (text first, pads after, attention mask 0 on pads), whatever side the
  tokenizer would pad on (left for Gemma/Llama in transformers 5). Training pads right, so every row keeps
  the positions it was trained at; a left-padded row of an absolute-position model (BERT) reads its pads as
  text positions and no longer starts with [CLS].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def longest_first(lengths: np.ndarray) -> np.ndarray:
    """Item order by decreasing length (stable, so equal lengths keep their input order)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def cut_batches(lengths: np.ndarray, order: np.ndarray, token_budget: int, max_rows: int | None = None) -> list[np.ndarray]:
    """Consecutive items of `order` grouped so that rows × longest row stays within `token_budget`.

    The longest row is tracked as items come, so any order works (file order for comparisons). A single
    item longer than the budget becomes a batch of its own (it cannot be cut further).
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    batches: list[np.ndarray] = []
    current: list[int] = []
    longest = 0
    for item in np.asarray(order, dtype=np.int64):
        length = int(lengths[item])
        grown = max(longest, length)
        full = max_rows is not None and len(current) >= max_rows
        if current and (grown * (len(current) + 1) > token_budget or full):
            batches.append(np.asarray(current, dtype=np.int64))
            current, grown = [], length
        current.append(int(item))
        longest = grown
    if current:
        batches.append(np.asarray(current, dtype=np.int64))
    return batches


def collate(sequences: Sequence[Sequence[int]], pad_id: int, device: str | torch.device) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids` and `attention_mask` on `device`; sequence classifiers read the last non-pad token."""
    import torch

    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}


def autocast(model, device: str | torch.device, precision: str = "weights"):
    """Mixed precision as trained: ops run in the dtype of the (frozen) input embedding, so fp32 trainable
    parameters (adapters, head) meet bfloat16/float16 activations without casts by hand; a float32 model
    runs without autocast unless `precision` is "bfloat16" (float32 weights, bfloat16 activations)."""
    import torch

    dtype = torch.bfloat16 if precision == "bfloat16" else model.get_input_embeddings().weight.dtype
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype in (torch.bfloat16, torch.float16))


def forward_logits(
    model, sequences: Sequence[Sequence[int]], pad_id: int, device: str | torch.device, precision: str = "weights"
) -> torch.Tensor:
    """float64 logits (n, labels) of one right-padded batch, without gradients."""
    import torch

    with torch.inference_mode(), autocast(model, device, precision):
        logits = model(**collate(sequences, pad_id, device)).logits
    return logits.double()


def predict_batch(
    model, sequences: Sequence[Sequence[int]], pad_id: int, device: str | torch.device, precision: str = "weights"
) -> np.ndarray:
    """(n, 3) float64 probabilities (a, b, tie) of one batch, in the order given.

    The softmax runs in float64 on the logits, so bfloat16 logits lose no more than their own rounding.
    """
    import torch

    return torch.softmax(forward_logits(model, sequences, pad_id, device, precision), dim=-1).cpu().numpy()


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def free_memory(device: str | torch.device) -> None:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class OomBackoff:
    """Out-of-memory state of one device: padded tokens of the smallest batch that did not fit, and the splits made."""

    ceiling: int | None = None
    splits: int = 0


def padded_size(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens a batch of these sequences costs once padded to its longest row."""
    return len(sequences) * max((len(s) for s in sequences), default=0)


def score_with_backoff(
    score: Callable[[list], np.ndarray], sequences: list, device: str | torch.device, backoff: OomBackoff
) -> np.ndarray:
    """`score(sequences)`; on out of memory the halves are scored one after the other (recursively), and batches at
    least as large as the smallest failure are split before they are tried. Rows keep their order."""
    padded = padded_size(sequences)
    too_big = backoff.ceiling is not None and padded >= backoff.ceiling and len(sequences) > 1
    if not too_big:
        try:
            return score(sequences)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            if len(sequences) == 1:
                raise RuntimeError(f"one row of {padded} tokens does not fit in memory on {device}: lower max_length") from err
        # outside the except block, so the traceback no longer pins the failed batch's tensors
        free_memory(device)
        backoff.splits += 1
        backoff.ceiling = padded if backoff.ceiling is None else min(backoff.ceiling, padded)
        log.warning(
            "%s: out of memory on %d rows × %d tokens; splitting the batch", device, len(sequences), padded // len(sequences)
        )
    half = len(sequences) // 2
    return np.concatenate(
        [
            score_with_backoff(score, sequences[:half], device, backoff),
            score_with_backoff(score, sequences[half:], device, backoff),
        ]
    )
