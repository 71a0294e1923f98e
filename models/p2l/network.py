"""The finetune encoder: a backbone (LoRA adapters on a decoder LLM, or every weight of a small encoder) and a
linear head trained together on the battles, as P2L trains its model.

The head maps the pooled prompt vector to K coefficients and the raw tie parameter; its bias starts at the
global Bradley-Terry fit and its weights at zero, and a ridge on the weights (`tune.head_l2`) keeps unfamiliar
prompts near the global leaderboard, as the frozen head's penalty does. A step takes `tune.batch_prompts`
prompts, one forward pass each, and every battle of those prompts enters its loss.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from models.backbone import trainable_in_float32, with_lora
from models.p2l.encoders import encode_batch, load_backbone, longest_first_batches
from models.p2l.head import Battles
from models.p2l.settings import EncoderConfig, TuneConfig
from models.transformer.heads import davidson_logits

log = logging.getLogger(__name__)


class P2LNetwork(torch.nn.Module):
    def __init__(self, backbone, hidden_size: int, n_models: int, pooling: str):
        super().__init__()
        self.backbone, self.pooling, self.n_models = backbone, pooling, n_models
        self.head = torch.nn.Linear(hidden_size, n_models + 1, dtype=torch.float32)
        torch.nn.init.zeros_(self.head.weight)

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def forward(self, sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, K) coefficients and (n,) raw tie parameters of a batch of tokenised prompts."""
        vectors = encode_batch(self.backbone, sequences, pad_id, self.pooling, device)
        out = self.head(vectors)
        return out[:, : self.n_models], out[:, self.n_models]


def build_network(encoder: EncoderConfig, n_models: int, device, seed: int):
    """(tokenizer, network): adapters or a full fine-tune per `encoder`, trainable weights in float32."""
    torch.manual_seed(seed)
    tokenizer, backbone = load_backbone(encoder, device)
    hidden_size = backbone.config.hidden_size
    if encoder.gradient_checkpointing:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if encoder.lora:
        args = (encoder.lora_r, encoder.lora_alpha, encoder.lora_dropout, encoder.lora_targets)
        backbone = with_lora(backbone, "FEATURE_EXTRACTION", *args)
    network = P2LNetwork(backbone, hidden_size, n_models, encoder.pooling)
    network.head.to(device)
    trainable_in_float32(network)
    return tokenizer, network


def battle_log_probs(theta: torch.Tensor, tie: torch.Tensor, battles: Battles, tie_model: str) -> torch.Tensor:
    """(n, 3) log probabilities a, b, tie of `battles` (prompt indices into the rows of theta)."""
    p = torch.as_tensor(battles.prompt, device=theta.device)
    a, b = torch.as_tensor(battles.a, device=theta.device), torch.as_tensor(battles.b, device=theta.device)
    if tie_model == "davidson":
        return torch.log_softmax(davidson_logits(theta[p, a], theta[p, b], tie[p]), dim=-1)
    d, eta = theta[p, a] - theta[p, b], torch.exp(tie[p])
    p_a, p_b = torch.sigmoid(d - eta), torch.sigmoid(-d - eta)
    return torch.log(torch.stack([p_a, p_b, (1 - p_a - p_b).clamp(min=1e-12)], dim=-1))


def schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_network(
    network: P2LNetwork, pad_id: int, sequences: list[list[int]], battles: Battles, tie_model: str, tune: TuneConfig, device
) -> int:
    """Trains in place; returns the optimizer steps taken. Batches of prompts in a seeded order, epoch after epoch."""
    labels = torch.as_tensor(np.select([battles.outcome == 1.0, battles.outcome == 0.0], [0, 1], 2), device=device)
    by_prompt = [np.flatnonzero(battles.prompt == i) for i in range(len(sequences))]
    per_epoch = math.ceil(len(sequences) / tune.batch_prompts)
    total = tune.max_steps or max(1, math.ceil(tune.epochs * per_epoch))
    head = list(network.head.parameters())
    backbone = [p for p in network.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": backbone, "lr": tune.learning_rate}, {"params": head, "lr": tune.head_learning_rate, "weight_decay": 0.0}]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule(s, total, int(tune.warmup_ratio * total)))
    # float16 gradients underflow without loss scaling, and an overflowed step would turn every weight into NaN: the
    # scaler scales the loss up, skips non-finite steps and adapts its scale (a no-op in bfloat16 and float32)
    half = network.get_input_embeddings().weight.dtype == torch.float16
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=half)
    rng = np.random.default_rng(tune.seed)
    order: list[int] = []
    network.train()
    for step in range(total):
        if len(order) < tune.batch_prompts:
            order += list(rng.permutation(len(sequences)))
        chosen, order = order[: tune.batch_prompts], order[tune.batch_prompts :]
        rows = np.concatenate([by_prompt[i] for i in chosen])
        local = np.full(len(sequences), -1)
        local[chosen] = np.arange(len(chosen))
        theta, tie = network([sequences[i] for i in chosen], pad_id, device)
        subset = battles.subset(rows)
        subset.prompt = local[subset.prompt]
        log_probs = battle_log_probs(theta, tie, subset, tie_model)
        loss = torch.nn.functional.nll_loss(log_probs, labels[torch.as_tensor(rows, device=device)])
        loss = loss + 0.5 * tune.head_l2 * network.head.weight.pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(backbone + head, 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if step % 20 == 0:
            log.debug("p2l step %d/%d loss %.4f", step + 1, total, loss.item())
    network.eval()
    return total


def network_coefficients(network: P2LNetwork, pad_id: int, sequences: list[list[int]], batch_size: int, device):
    """(n, K) coefficients and (n,) raw tie parameters, float64, without gradients."""
    theta = np.zeros((len(sequences), network.n_models))
    tie = np.zeros(len(sequences))
    network.eval()
    with torch.inference_mode():
        for rows in longest_first_batches(sequences, batch_size):
            out_theta, out_tie = network([sequences[i] for i in rows], pad_id, device)
            theta[rows], tie[rows] = out_theta.double().cpu().numpy(), out_tie.double().cpu().numpy()
    return theta, tie
