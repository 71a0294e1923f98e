"""GPU throughput switches of the training loop (issue 26), each a setting with its rule here; those that must not
change the result are tested to leave it unchanged (tests/test_training_switches.py).

- Micro-batches by token budget (`train.micro_batch_tokens`): a step takes the same rows as before (batch_size ×
  grad_accum per process), but they are cut into forward passes of at most that many padded tokens, longest first,
  instead of batch_size rows each; every row's loss is weighted 1 / (rows of the step), so the step's gradient is
  the fixed split's up to rounding. Short rows then share a pass and long ones get their own: fewer passes, no
  padding waste, and a memory peak bounded by tokens rather than by the longest rows a batch happens to draw.
- Gradient checkpointing `auto`: on only when the estimated peak of a step without it (models/transformer/capacity.py)
  would not fit 90 % of the GPU; never on a CPU. Recomputation gives the same gradients.
- Sequence bucketing (`train.bucket_batches`): the rows of that many micro-batches are length-sorted together before
  being cut (less padding; the order of the micro-batches is still shuffled). 1 turns it off.
- Fused AdamW (`train.fused_optimizer`): one kernel for the whole update; the same arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch

from models.transformer.batches import cut_batches, longest_first
from models.transformer.settings import ModelConfig, TrainConfig

MEMORY_SHARE = 0.9


def token_micro_batches(micro: list[tuple[np.ndarray, np.ndarray]], lengths: np.ndarray, budget: int) -> list[tuple]:
    """A step's scheduled micro-batches (row indices, swap flags) re-cut by `budget` padded tokens: (rows, swaps, loss
    weight per row) with the weight 1 / (rows of the step) for every row."""
    rows = np.concatenate([r for r, _ in micro])
    swaps = np.concatenate([s for _, s in micro])
    cut = cut_batches(lengths[rows], longest_first(lengths[rows]), budget)
    return [(rows[part], swaps[part], 1.0 / len(rows)) for part in cut]


def checkpointing_needed(model_cfg: ModelConfig, train_cfg: TrainConfig, config: dict, device: torch.device) -> bool:
    """Whether `gradient_checkpointing = "auto"` turns it on: the estimated step without it does not fit the GPU."""
    from models.backbone import compute_dtype_name
    from models.transformer.capacity import architecture_shape, training_bytes

    if device.type != "cuda":
        return False
    shape = architecture_shape(config)
    budget = train_cfg.micro_batch_tokens
    rows = max(1, budget // model_cfg.max_length) if budget else train_cfg.batch_size
    lora = 2 * model_cfg.lora_r * shape["hidden_size"] * len(model_cfg.lora_targets) * shape["layers"] if model_cfg.lora else 0
    trainable = lora or shape["parameters_total"]
    dtype = compute_dtype_name(model_cfg.dtype, device)
    needed = training_bytes(shape, dtype, model_cfg.quantize_4bit, trainable, rows, model_cfg.max_length, checkpointing=False)
    return needed > MEMORY_SHARE * torch.cuda.get_device_properties(device).total_memory


def make_optimizer(params: list, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel when asked (CUDA, and CPU in torch >= 2.4)."""
    fused = {"fused": True} if cfg.fused_optimizer else {}
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, **fused)
