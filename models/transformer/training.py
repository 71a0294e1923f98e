"""The fine-tuning loop: seeded batch order, swap augmentation, gradient accumulation, cosine schedule,
and a resumable checkpoint every N optimizer steps (a killed run continues from its last checkpoint
and ends in the same state as an uninterrupted one)."""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from competition.atomic import atomic_path
from competition.errors import InputError
from competition.labels import swap_labels
from models.transformer.batches import collate
from models.transformer.loading import load_classifier
from models.transformer.packing import encode_pairs
from models.transformer.settings import ModelConfig, TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOSS_WINDOW = 50  # steps averaged for the loss shown while training
_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
MEGABATCH = 16  # micro-batches whose rows are length-sorted together (less padding, still shuffled)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def n_layers(model) -> int:
    found = {int(m.group(1)) for name, _ in model.named_parameters() if (m := _LAYER_INDEX.search(name))}
    return max(found) + 1 if found else 0


def build_model(cfg: ModelConfig, device: torch.device, seed: int):
    """(tokenizer, model) ready to train: frozen first layers, LoRA adapters or full fine-tune."""
    torch.manual_seed(seed)  # the fresh head (and adapters) start the same way on every run
    quantize = cfg.quantize_4bit and device.type == "cuda"
    tokenizer, model = load_classifier(cfg.resolved_path(), device, cfg.dtype, quantize_4bit=quantize)
    depth = n_layers(model)
    if cfg.frozen_layers >= max(depth, 1):
        raise InputError(f"model.frozen_layers={cfg.frozen_layers} freezes all {depth} layers")
    if quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
            layers_to_transform=list(range(cfg.frozen_layers, depth)) if cfg.frozen_layers else None,
        )
        model = get_peft_model(model, lora)
    else:
        for name, param in model.named_parameters():
            m = _LAYER_INDEX.search(name)
            if m and int(m.group(1)) < cfg.frozen_layers:
                param.requires_grad_(False)
    return tokenizer, model


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor], where: Path) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise InputError(f"saved weights do not fit this model (e.g. {unknown[0]!r})", where)
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def batch_schedule(text_lengths: np.ndarray, cfg: TrainConfig, n_micro: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_micro` micro-batches (row indices, swap flags), epoch after epoch, fully determined by the seed."""
    rng = np.random.default_rng(cfg.seed)
    n = len(text_lengths)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    while len(out) < n_micro:
        perm = rng.permutation(n)
        swaps = rng.random(n) < 0.5 if cfg.swap_augment else np.zeros(n, dtype=bool)
        epoch = []
        for start in range(0, n, cfg.batch_size * MEGABATCH):
            chunk = perm[start : start + cfg.batch_size * MEGABATCH]
            chunk = chunk[np.argsort(-text_lengths[chunk], kind="stable")]
            epoch += [chunk[i : i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)]
        out += [(epoch[i], swaps[epoch[i]]) for i in rng.permutation(len(epoch))]
    return out[:n_micro]


def count_steps(n_rows: int, cfg: TrainConfig) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_epoch = math.ceil(n_rows / cfg.batch_size)
    return math.ceil(math.ceil(cfg.epochs * per_epoch) / cfg.grad_accum)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # mean training loss of each step run in this call
    start_step: int = 0  # 0, or the checkpoint step this call resumed from
    steps_done: int = 0  # optimizer steps completed in total, resumed ones included
    total_steps: int = 0
    stopped: bool = False  # stopped by stop_after_steps before total_steps
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step run in this call


def _fingerprint(n_rows: int, model_cfg: ModelConfig, cfg: TrainConfig, total: int) -> dict:
    return {
        "rows": n_rows,
        "max_length": model_cfg.max_length,
        "batch": cfg.batch_size,
        "accum": cfg.grad_accum,
        "total": total,
        "seed": cfg.seed,
    }


def save_checkpoint(path: Path, model, optimizer, scheduler, step: int, fingerprint: dict) -> None:
    state = {
        "step": step,
        "fingerprint": fingerprint,
        "trainable": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resume(path: Path, model, optimizer, scheduler, fingerprint: dict) -> int:
    """Restores a checkpoint when there is one; returns the step to continue from."""
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise InputError(f"checkpoint was made with other data or settings {state['fingerprint']} (delete it to restart)", path)
    load_trainable_state(model, state["trainable"], path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"])


def train_classifier(
    model, tokenizer, frame, y, model_cfg: ModelConfig, cfg: TrainConfig, device, checkpoint_dir=None
) -> TrainResult:
    """Fine-tunes `model` in place on `frame` (prompt/response_a/response_b turn lists) and labels `y`."""
    from transformers import get_cosine_schedule_with_warmup

    y = np.asarray(y, dtype=np.int64)
    total = count_steps(len(frame), cfg)
    lengths = (
        frame[["prompt", "response_a", "response_b"]].map(lambda turns: sum(len(t or "") for t in turns)).sum(axis=1).to_numpy()
    )
    schedule = batch_schedule(lengths, cfg, total * cfg.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), max(total, 1))
    fingerprint = _fingerprint(len(frame), model_cfg, cfg, total)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    start = resume(ckpt, model, optimizer, scheduler, fingerprint) if ckpt else 0
    result = TrainResult(start_step=start, steps_done=start, total_steps=total)
    pad_id = tokenizer.pad_token_id
    model.train()
    bar = tqdm(range(start, total), initial=start, total=total, desc="train", unit="step", leave=False)
    for step in bar:
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for rows, swapped in schedule[step * cfg.grad_accum : (step + 1) * cfg.grad_accum]:
            batch = collate(encode_pairs(tokenizer, frame.iloc[rows], model_cfg.max_length, swapped), pad_id, device)
            labels = torch.as_tensor(np.where(swapped, swap_labels(y[rows]), y[rows]), device=device)
            logits = model(**batch).logits.float()
            loss = torch.nn.functional.cross_entropy(logits, labels) / cfg.grad_accum
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        result.losses.append(step_loss)
        result.step_seconds.append(time.perf_counter() - began)
        result.steps_done = step + 1
        # The mean of recent steps, so a log shows whether training moves below the prior (about 1.06 here).
        recent_loss = float(np.mean(result.losses[-LOSS_WINDOW:]))
        bar.set_postfix(loss=f"{recent_loss:.4f}", refresh=False)
        if ckpt and (result.steps_done % cfg.checkpoint_every == 0 or result.steps_done == total):
            save_checkpoint(ckpt, model, optimizer, scheduler, result.steps_done, fingerprint)
            log.info(
                "step %d/%d: mean training loss of the last %d steps %.4f", result.steps_done, total, LOSS_WINDOW, recent_loss
            )
        if cfg.stop_after_steps is not None and result.steps_done >= cfg.stop_after_steps and result.steps_done < total:
            result.stopped = True
            break
    model.eval()
    return result
