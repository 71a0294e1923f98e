"""The reward head's training loop over distinct answers (`train.batching = "answers"`).

Each micro-batch is a unit of pairs grouped by prompt (models/transformer/answers.py): its distinct sides are
encoded once, in length-sorted right-padded batches, and every pair's Davidson logits are read off its two
sides' rewards, so a side shared by k pairs of the unit costs one forward and backward instead of k. A step's
loss is the mean cross-entropy over all pairs of the step, however its units are cut. (The reward head is
exactly symmetric in A and B, so swap augmentation would change nothing here.)

Early stopping (`early_stopping_share` > 0): a seeded share of the training prompts is held out; their pairs'
log loss is measured `evals_per_epoch` times per epoch, the best weights are kept, and training stops after
`patience` evaluations without improvement. The checkpoint carries the best weights and the evaluation
history, so a killed run resumes to the same end. Under torchrun each rank runs 1/world of every step's units.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from competition.labels import one_hot
from models.transformer.answers import SideTable, pair_units, side_batches, side_table, unit_sides
from models.transformer.batches import autocast, collate, forward_logits
from models.transformer.distributed import current_ranks, mean_over_ranks
from models.transformer.heads import davidson_logits
from models.transformer.settings import ModelConfig, TrainConfig
from models.transformer.training import (
    CHECKPOINT_FILE,
    LOSS_WINDOW,
    TrainResult,
    _fingerprint,
    load_trainable_state,
    optimizer_step,
    resume_with_extra,
    save_checkpoint,
    trainable_state,
)

log = logging.getLogger(__name__)


@dataclass
class RewardTrainResult(TrainResult):
    pairs: int = 0  # training pairs (held-out ones excluded)
    sides: int = 0  # distinct (prompt, answer) sides of the training pairs
    step_sides: list[int] = field(default_factory=list)  # sides encoded (forward + backward) in each step of this call
    step_pairs: list[int] = field(default_factory=list)  # pairs whose loss entered each step of this call
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out log loss)
    best_step: int = 0  # the step whose weights were kept (the last one without early stopping)
    early_stopped: bool = False


class SideScorer(torch.nn.Module):
    """Rewards of several right-padded batches in one call (DistributedDataParallel syncs once per call),
    and the tie parameter, so that every trainable parameter is used inside the wrapped forward."""

    def __init__(self, pair: torch.nn.Module):
        super().__init__()
        self.pair = pair

    def forward(self, batches: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.pair.rewards(**batch) for batch in batches]), self.pair.log_tie.float()


def held_out_prompts(groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Per row: True when its prompt is in the seeded held-out `share` of prompts (at least one, never all)."""
    prompts = np.unique(np.asarray(groups).astype(str))
    if share <= 0 or len(prompts) < 2:
        return np.zeros(len(groups), dtype=bool)
    n_held = min(max(1, round(share * len(prompts))), len(prompts) - 1)
    chosen = np.random.default_rng(seed).choice(prompts, size=n_held, replace=False)
    return np.isin(np.asarray(groups).astype(str), chosen)


def score_sides(network, sequences: list[list[int]], pad_id: int, device, token_budget: int, precision: str) -> torch.Tensor:
    """float64 reward of each packed side (no gradients), in batches cut by `token_budget`, longest first."""
    rewards = torch.zeros(len(sequences), dtype=torch.float64)
    if not sequences:
        return rewards
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    for rows in side_batches(lengths, token_budget):
        batch = [sequences[i] for i in rows]
        rewards[torch.as_tensor(rows)] = forward_logits(network.scorer, batch, pad_id, device, precision)[:, 0].cpu()
    return rewards


def pair_probabilities(network, table: SideTable, pairs: np.ndarray, pad_id: int, device, budget: int, precision: str):
    """(len(pairs), 3) float64 Davidson probabilities, each distinct side of `pairs` scored once."""
    sides, pos_a, pos_b = unit_sides(table, pairs)
    rewards = score_sides(network, [table.sequences[s] for s in sides], pad_id, device, budget, precision)
    logits = davidson_logits(rewards[pos_a], rewards[pos_b], network.log_tie.detach().double().cpu())
    return torch.softmax(logits, dim=-1).numpy()


def _schedule(table: SideTable, pairs: np.ndarray, cfg: TrainConfig, micro_per_step: int) -> tuple[list[np.ndarray], int, int]:
    """(units of every step, total steps, steps per epoch): whole epochs of units, seeded, cut to `cfg.epochs`."""
    rng = np.random.default_rng(cfg.seed)
    first = pair_units(table, pairs, cfg.step_tokens, rng)
    per_epoch = max(1, math.ceil(len(first) / micro_per_step))
    total = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(cfg.epochs * per_epoch))
    units = list(first)
    while len(units) < total * micro_per_step:
        units += pair_units(table, pairs, cfg.step_tokens, rng)
    return units[: total * micro_per_step], total, per_epoch


def _unit_loss(runner, network, table: SideTable, unit: np.ndarray, targets: torch.Tensor, pad_id: int, device, cfg, precision):
    """(summed cross-entropy of the unit's pairs, float32; number of distinct sides), each side encoded once."""
    sides, pos_a, pos_b = unit_sides(table, unit)
    sequences = [table.sequences[s] for s in sides]
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    batches = side_batches(lengths, cfg.step_tokens)
    order = np.concatenate(batches)
    with autocast(network, device, precision):
        sorted_rewards, log_tie = runner([collate([sequences[i] for i in rows], pad_id, device) for rows in batches])
    rewards = torch.empty_like(sorted_rewards)
    rewards[torch.as_tensor(order, device=rewards.device)] = sorted_rewards
    at_a, at_b = torch.as_tensor(pos_a, device=rewards.device), torch.as_tensor(pos_b, device=rewards.device)
    log_probs = torch.log_softmax(davidson_logits(rewards[at_a], rewards[at_b], log_tie), dim=-1)
    return -(targets * log_probs).sum(), len(sides)


@dataclass(frozen=True)
class _Plan:
    table: SideTable
    fit_pairs: np.ndarray
    held_pairs: np.ndarray
    schedule: list[np.ndarray]  # the units of every micro-batch, step after step
    total: int  # optimizer steps
    eval_every: int  # steps between held-out evaluations; 0: none


def _plan(tokenizer, frame, groups, model_cfg: ModelConfig, cfg: TrainConfig, micro: int) -> _Plan:
    table = side_table(tokenizer, frame, model_cfg.max_length)
    held = held_out_prompts(groups, cfg.early_stopping_share, cfg.seed)
    fit_pairs, held_pairs = np.flatnonzero(~held), np.flatnonzero(held)
    schedule, total, per_epoch = _schedule(table, fit_pairs, cfg, micro)
    eval_every = max(1, math.ceil(per_epoch / cfg.evals_per_epoch)) if len(held_pairs) else 0
    return _Plan(table, fit_pairs, held_pairs, schedule, total, eval_every)


def _step_gradients(runner, network, plan: _Plan, units, wanted, pad_id, device, cfg, precision, scaler) -> tuple[float, int]:
    """Accumulates the gradient of one optimizer step's mean pair loss over this rank's units; (loss, sides)."""
    ranks = current_ranks()
    step_pairs, step_loss, step_sides = sum(len(u) for u in units), 0.0, 0
    mine = units[ranks.rank :: ranks.world]
    for i, unit in enumerate(mine):
        sync = runner.no_sync() if ranks.world > 1 and i < len(mine) - 1 else contextlib.nullcontext()
        with sync:
            unit_targets = wanted[torch.as_tensor(unit, device=device)]
            loss, n_sides = _unit_loss(runner, network, plan.table, unit, unit_targets, pad_id, device, cfg, precision)
            # DDP averages over ranks: scaled by world, the step's gradient is that of the mean over all its pairs
            loss = loss * ranks.world / step_pairs
            scaler.scale(loss).backward()
        step_loss += loss.item()
        step_sides += n_sides
    return step_loss, step_sides


def _record(result: RewardTrainResult, step: int, loss: float, patience: int) -> bool:
    """Adds an evaluation; True when it is the best so far. Sets early_stopped after `patience` worse ones."""
    result.evaluations.append((step, loss))
    best = min(result.evaluations, key=lambda e: e[1])
    result.early_stopped = len(result.evaluations) - result.evaluations.index(best) - 1 >= patience
    return best[0] == step


def train_reward(
    network, tokenizer, frame, targets, groups, model_cfg: ModelConfig, cfg: TrainConfig, device, checkpoint_dir=None
) -> RewardTrainResult:
    """Fine-tunes the reward head `network` (RewardPair) in place on `frame`'s pairs against `targets` (class ids
    or (n, 3) distributions), with prompt `groups` for the early-stopping hold-out."""
    from transformers import get_cosine_schedule_with_warmup

    targets = np.asarray(targets)
    targets = one_hot(targets) if targets.ndim == 1 else targets.astype(np.float64)
    ranks = current_ranks()
    plan = _plan(tokenizer, frame, groups, model_cfg, cfg, cfg.grad_accum * ranks.world)
    micro, total = cfg.grad_accum * ranks.world, plan.total
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), max(total, 1))
    scaler = torch.amp.GradScaler(device.type, enabled=network.get_input_embeddings().weight.dtype == torch.float16)
    fingerprint = _fingerprint(targets, model_cfg, cfg, total, ranks.world)
    fingerprint |= {"batching": cfg.batching, "step_tokens": cfg.step_tokens, "held_out": len(plan.held_pairs)}
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    start, kept = resume_with_extra(ckpt, network, optimizer, scheduler, scaler, fingerprint, device) if ckpt else (0, {})
    result = RewardTrainResult(start_step=start, steps_done=start, total_steps=total, pairs=len(plan.fit_pairs))
    result.sides = len(np.unique(np.concatenate([plan.table.side_a[plan.fit_pairs], plan.table.side_b[plan.fit_pairs]])))
    result.evaluations = [(int(s), float(v)) for s, v in kept.get("evaluations", [])]
    best_state, result.best_step = kept.get("best_state"), int(kept.get("best_step", 0))
    result.early_stopped = bool(kept.get("early_stopped", False))  # a finished run killed before its fold was saved
    runner = SideScorer(network)
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
    wanted, pad_id, precision = (
        torch.as_tensor(targets, dtype=torch.float32, device=device),
        tokenizer.pad_token_id,
        model_cfg.autocast,
    )
    network.train()
    steps = range(start, start if result.early_stopped else total)
    bar = tqdm(steps, initial=start, total=total, desc="train", unit="step", leave=False, disable=not ranks.is_main)
    for step in bar:
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        units = plan.schedule[step * micro : (step + 1) * micro]
        step_loss, sides = _step_gradients(runner, network, plan, units, wanted, pad_id, device, cfg, precision, scaler)
        optimizer_step(params, optimizer, scheduler, scaler)
        result.step_seconds.append(time.perf_counter() - began)  # the evaluation below is not counted
        result.losses.append(mean_over_ranks(step_loss, device))
        result.step_pairs.append(sum(len(u) for u in units[ranks.rank :: ranks.world]))
        result.step_sides.append(sides)
        result.steps_done = step + 1
        if plan.eval_every and (result.steps_done % plan.eval_every == 0 or result.steps_done == total):
            loss = held_out_loss(network, plan, targets, pad_id, device, cfg.predict_tokens, precision)
            if _record(result, result.steps_done, loss, cfg.patience):
                best_state, result.best_step = trainable_state(network), result.steps_done
        bar.set_postfix(loss=f"{float(np.mean(result.losses[-LOSS_WINDOW:])):.4f}", refresh=False)
        if ckpt and (result.steps_done % cfg.checkpoint_every == 0 or result.steps_done == total or result.early_stopped):
            extra = {"evaluations": result.evaluations, "best_step": result.best_step, "early_stopped": result.early_stopped}
            extra |= {} if best_state is None else {"best_state": best_state}
            save_checkpoint(ckpt, network, optimizer, scheduler, scaler, result.steps_done, fingerprint, device, extra)
        if result.early_stopped:
            log.info("early stop at step %d: best held-out log loss at step %d", result.steps_done, result.best_step)
            break
        if cfg.stop_after_steps is not None and result.steps_done >= cfg.stop_after_steps and result.steps_done < total:
            result.stopped = True
            break
    if not result.stopped:
        if best_state is not None:
            load_trainable_state(network, best_state, ckpt or Path("."))
        else:
            result.best_step = result.steps_done
    network.eval()
    return result


def held_out_loss(network, plan: _Plan, targets: np.ndarray, pad_id: int, device, budget: int, precision: str) -> float:
    """Cross-entropy of the held-out pairs (the same on every rank, so all take the same stopping decision)."""
    network.eval()
    probs = pair_probabilities(network, plan.table, plan.held_pairs, pad_id, device, budget, precision)
    network.train()
    loss = -(targets[plan.held_pairs] * np.log(np.clip(probs, 1e-15, 1))).sum(axis=1).mean()
    return mean_over_ranks(float(loss), device)
