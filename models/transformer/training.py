"""The fine-tuning loop: seeded batch order, swap augmentation, gradient accumulation, cosine schedule,
mixed precision (fp32 trainable parameters under autocast), data parallelism under torchrun, and a
resumable checkpoint every N optimizer steps (a killed run continues from its last checkpoint and ends in
the same state as an uninterrupted one).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from competition.errors import InputError
from competition.labels import one_hot, swap_probabilities
from competition.rundir import ABSENT, SEALED, WHY, seal_state, write_sealed
from models.backbone import load_classifier, load_trainable_state, trainable_in_float32, trainable_state, with_lora
from models.transformer.batches import autocast
from models.transformer.distributed import barrier, current_ranks, gather_objects, mean_over_ranks
from models.transformer.heads import RewardPair, training_logits
from models.transformer.packing import encode_pairs
from models.transformer.settings import ModelConfig, TrainConfig
from models.transformer.steps import checkpointing_needed, make_optimizer, token_micro_batches

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOSS_WINDOW = 50  # steps averaged for the loss shown while training
_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def n_layers(model) -> int:
    found = {int(m.group(1)) for name, _ in model.named_parameters() if (m := _LAYER_INDEX.search(name))}
    return max(found) + 1 if found else 0


def build_model(cfg: ModelConfig, device: torch.device, seed: int, train: TrainConfig | None = None):
    """(tokenizer, network) ready to train: frozen first layers, LoRA adapters or full fine-tune, the cross or
    reward head, trainable parameters in float32; gradient checkpointing as set (`auto` decides from `train`).

    4-bit bases are prepared by hand rather than by peft's `prepare_model_for_kbit_training`, which upcasts
    every non-quantized weight to float32 (Gemma-2-9B's 0.9B-parameter embedding alone is 3.7 GB): here the
    base is frozen as loaded, and only what trains is float32.
    """
    torch.manual_seed(seed)  # the fresh head (and adapters) start the same way on every run and every rank
    labels = 1 if cfg.head == "reward" else 3
    tokenizer, model = load_classifier(
        cfg.resolved_path(),
        device,
        cfg.dtype,
        cfg.quantize_4bit,
        random_init=cfg.random_init,
        num_labels=labels,
        attention=cfg.attn_implementation,
    )
    depth = n_layers(model)
    if cfg.frozen_layers >= max(depth, 1):
        raise InputError(f"model.frozen_layers={cfg.frozen_layers} freezes all {depth} layers")
    auto = cfg.gradient_checkpointing == "auto" and train is not None
    if cfg.gradient_checkpointing is True or (auto and checkpointing_needed(cfg, train, model.config.to_dict(), device)):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        layers = list(range(cfg.frozen_layers, depth)) if cfg.frozen_layers else None
        model = with_lora(model, "SEQ_CLS", cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, layers)
    else:
        for name, param in model.named_parameters():
            m = _LAYER_INDEX.search(name)
            if m and int(m.group(1)) < cfg.frozen_layers:
                param.requires_grad_(False)
    network = RewardPair(model) if cfg.head == "reward" else model
    trainable_in_float32(network)
    return tokenizer, network.to(device) if cfg.head == "reward" else network


def batch_schedule(text_lengths: np.ndarray, cfg: TrainConfig, n_micro: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n_micro` micro-batches (row indices, swap flags), epoch after epoch, fully determined by the seed."""
    rng = np.random.default_rng(cfg.seed)
    n = len(text_lengths)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    while len(out) < n_micro:
        perm = rng.permutation(n)
        swaps = rng.random(n) < 0.5 if cfg.swap_augment else np.zeros(n, dtype=bool)
        epoch = []
        for start in range(0, n, cfg.batch_size * cfg.bucket_batches):
            chunk = perm[start : start + cfg.batch_size * cfg.bucket_batches]
            chunk = chunk[np.argsort(-text_lengths[chunk], kind="stable")]
            epoch += [chunk[i : i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)]
        out += [(epoch[i], swaps[epoch[i]]) for i in rng.permutation(len(epoch))]
    return out[:n_micro]


def count_steps(n_rows: int, cfg: TrainConfig, world: int = 1) -> int:
    """Optimizer steps; one step takes batch_size × grad_accum × world rows."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_epoch = math.ceil(n_rows / cfg.batch_size)
    return math.ceil(math.ceil(cfg.epochs * per_epoch) / (cfg.grad_accum * world))


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # mean training loss of each step run in this call
    start_step: int = 0  # 0, or the checkpoint step this call resumed from
    steps_done: int = 0  # optimizer steps completed in total, resumed ones included
    total_steps: int = 0
    stopped: bool = False  # stopped by stop_after_steps before total_steps
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step run in this call


def _fingerprint(targets: np.ndarray, model_cfg: ModelConfig, cfg: TrainConfig, total: int, world: int) -> dict:
    return {
        "rows": len(targets),
        "targets": float(np.round(np.asarray(targets, dtype=np.float64).sum(axis=0) @ [1.0, 2.0, 3.0], 6)),
        "max_length": model_cfg.max_length,
        "head": model_cfg.head,
        "batch": cfg.batch_size,
        "accum": cfg.grad_accum,
        "total": total,
        "seed": cfg.seed,
        "world": world,
        # the switches that change which rows a step takes or how they are cut (absent at their defaults)
        **({"bucket": cfg.bucket_batches} if cfg.bucket_batches != TrainConfig.bucket_batches else {}),
        **({"micro_tokens": cfg.micro_batch_tokens} if cfg.micro_batch_tokens else {}),
    }


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)  # this rank's GPU only: a checkpoint loads on any GPU count
    return state


def save_checkpoint(
    path: Path, model, optimizer, scheduler, scaler, step: int, fingerprint: dict, device, extra: dict | None = None
) -> None:
    """Rank 0 writes the state (identical on every rank after a synchronised step), every rank's RNG and
    `extra` (what a loop keeps besides, e.g. the best weights so far)."""
    rng = gather_objects(_rng_state(device))
    if current_ranks().is_main:
        state = {
            "step": step,
            "fingerprint": fingerprint,
            "trainable": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "extra": extra or {},
        }
        write_sealed(path, lambda tmp: torch.save(state, tmp))
    barrier()


def resume(path: Path, model, optimizer, scheduler, scaler, fingerprint: dict, device) -> int:
    """Restores a checkpoint when there is one; returns the step to continue from."""
    return resume_with_extra(path, model, optimizer, scheduler, scaler, fingerprint, device)[0]


def resume_with_extra(path: Path, model, optimizer, scheduler, scaler, fingerprint: dict, device) -> tuple[int, dict]:
    """`resume`, also returning the checkpoint's `extra` ({} without a checkpoint). A checkpoint that does not match
    its seal (torn, changed, or cut off by a kill before it was sealed) is not trusted: the fold starts over."""
    found = seal_state(path)
    if found != SEALED:
        if found != ABSENT:
            log.warning("checkpoint %s %s: the fold starts over", path, WHY[found])
        return 0, {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state.get("fingerprint", {})
    if saved.get("world", 1) != fingerprint["world"]:
        raise InputError(
            f"checkpoint was written by {saved.get('world', 1)} processes and this run has {fingerprint['world']}: "
            f"resume with torchrun --nproc-per-node {saved.get('world', 1)} (or delete it to restart)",
            path,
        )
    if saved != fingerprint:
        raise InputError(f"checkpoint was made with other data or settings {saved} (delete it to restart)", path)
    load_trainable_state(model, state["trainable"], path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"][current_ranks().rank]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"]), dict(state.get("extra", {}))


def optimizer_step(params, optimizer, scheduler, scaler) -> None:
    """One update from the accumulated gradients: unscaled (float16), clipped to norm 1, then the schedule moves."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def text_lengths(frame) -> np.ndarray:
    return (
        frame[["prompt", "response_a", "response_b"]].map(lambda turns: sum(len(t or "") for t in turns)).sum(axis=1).to_numpy()
    )


def train_classifier(
    network, tokenizer, frame, targets, model_cfg: ModelConfig, cfg: TrainConfig, device, checkpoint_dir=None
) -> TrainResult:
    """Fine-tunes `network` in place on `frame` (prompt/response_a/response_b turn lists).

    `targets` are class ids (n,) or target distributions (n, 3) (soft labels from a teacher): the loss is the
    cross-entropy to them, which for one-hot targets is the usual hard-label loss. Under torchrun each rank
    runs 1/world of every step's micro-batches and DistributedDataParallel averages the gradients, so N
    processes take the same steps as one process with grad_accum × N.
    """
    from transformers import get_cosine_schedule_with_warmup

    targets = np.asarray(targets)
    targets = one_hot(targets) if targets.ndim == 1 else targets.astype(np.float64)
    ranks = current_ranks()
    micro_per_step = cfg.grad_accum * ranks.world
    total = count_steps(len(frame), cfg, ranks.world)
    schedule = batch_schedule(text_lengths(frame), cfg, total * micro_per_step)
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg, device)
    packed = None
    if cfg.micro_batch_tokens:
        if model_cfg.head != "cross":
            raise InputError("train.micro_batch_tokens cuts the cross head's passes; the reward head batches its own way")
        packed = np.fromiter(map(len, encode_pairs(tokenizer, frame, model_cfg.max_length)), dtype=np.int64, count=len(frame))
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), max(total, 1))
    # float16 activations need loss scaling; bfloat16 and float32 do not (the scaler is then a no-op)
    half = network.get_input_embeddings().weight.dtype == torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=half)
    fingerprint = _fingerprint(targets, model_cfg, cfg, total, ranks.world)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    start = resume(ckpt, network, optimizer, scheduler, scaler, fingerprint, device) if ckpt else 0
    result = TrainResult(start_step=start, steps_done=start, total_steps=total)
    runner = network
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    network.train()
    bar = tqdm(range(start, total), initial=start, total=total, desc="train", unit="step", leave=False, disable=not ranks.is_main)
    for step in bar:
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        mine = schedule[step * micro_per_step : (step + 1) * micro_per_step][ranks.rank :: ranks.world]
        passes = token_micro_batches(mine, packed, cfg.micro_batch_tokens) if packed is not None else [(*m, None) for m in mine]
        for i, (rows, swapped, row_weight) in enumerate(passes):
            wanted = targets[rows]
            wanted = np.where(swapped[:, None], swap_probabilities(wanted), wanted)
            # gradients are averaged across ranks on the last micro-batch of the step only
            sync = runner.no_sync() if ranks.world > 1 and i < len(passes) - 1 else contextlib.nullcontext()
            with sync:
                with autocast(network, device, model_cfg.autocast):
                    logits = training_logits(
                        runner, model_cfg.head, tokenizer, frame.iloc[rows], swapped, model_cfg.max_length, device
                    )
                log_probs = torch.log_softmax(logits.float(), dim=-1)
                row_losses = -(torch.as_tensor(wanted, dtype=torch.float32, device=device) * log_probs).sum(dim=-1)
                loss = row_losses.mean() / cfg.grad_accum if row_weight is None else row_losses.sum() * row_weight
                scaler.scale(loss).backward()
            step_loss += loss.item()
        optimizer_step(params, optimizer, scheduler, scaler)
        result.losses.append(mean_over_ranks(step_loss, device))
        result.step_seconds.append(time.perf_counter() - began)
        result.steps_done = step + 1
        # The mean of recent steps, so a log shows whether training moves below the prior (about 1.06 here).
        recent_loss = float(np.mean(result.losses[-LOSS_WINDOW:]))
        bar.set_postfix(loss=f"{recent_loss:.4f}", refresh=False)
        if ckpt and (result.steps_done % cfg.checkpoint_every == 0 or result.steps_done == total):
            save_checkpoint(ckpt, network, optimizer, scheduler, scaler, result.steps_done, fingerprint, device)
            log.info(
                "step %d/%d: mean training loss of the last %d steps %.4f", result.steps_done, total, LOSS_WINDOW, recent_loss
            )
        if cfg.stop_after_steps is not None and result.steps_done >= cfg.stop_after_steps and result.steps_done < total:
            result.stopped = True
            break
    network.eval()
    return result
