"""The two ways a backbone turns a conversation pair into a/b/tie logits.

- cross: one sequence (prompt, A, B) through a 3-way classification head (a cross-encoder: A and B attend
  to each other, and share the token budget).
- reward: (prompt, A) and (prompt, B) scored separately by one scalar head with shared weights, each side
  with the whole budget; the logits are (d/2, -d/2, log ν) with d = r_A - r_B, i.e. Davidson's tie model
  P(a) ∝ π_A, P(b) ∝ π_B, P(tie) ∝ ν·sqrt(π_A·π_B) with π = exp(r). Exchanging A and B exchanges P(a) and
  P(b) exactly, so the head is symmetric by construction and needs no swap averaging.
"""

from __future__ import annotations

import numpy as np
import torch

from models.transformer.batches import collate
from models.transformer.packing import encode_pairs, encode_responses

HEADS = ("cross", "reward")


def davidson_logits(reward_a: torch.Tensor, reward_b: torch.Tensor, log_tie: torch.Tensor) -> torch.Tensor:
    half = (reward_a - reward_b) / 2
    return torch.stack([half, -half, log_tie.expand_as(half)], dim=-1)


class RewardPair(torch.nn.Module):
    """A 1-label sequence classifier used as a scalar reward r(prompt, response), plus the tie parameter."""

    def __init__(self, scorer: torch.nn.Module):
        super().__init__()
        self.scorer = scorer
        self.log_tie = torch.nn.Parameter(torch.zeros((), dtype=torch.float32))

    def get_input_embeddings(self):
        return self.scorer.get_input_embeddings()

    def rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.scorer(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rows [0, n) are the A sides and [n, 2n) the B sides of n pairs → (n, 3) logits."""
        rewards = self.rewards(input_ids, attention_mask)
        n = len(rewards) // 2
        return davidson_logits(rewards[:n], rewards[n:], self.log_tie.float())


def training_logits(network, head: str, tokenizer, rows, swapped: np.ndarray, max_length: int, device) -> torch.Tensor:
    """(n, 3) float32 logits of `rows` (a frame slice) in the A/B order given by `swapped`, with gradients.

    `network` may be wrapped (DistributedDataParallel): it is only called, never inspected.
    """
    pad_id = tokenizer.pad_token_id
    if head == "reward":
        side_a = encode_responses(tokenizer, rows, max_length, "a")
        side_b = encode_responses(tokenizer, rows, max_length, "b")
        firsts = [b if s else a for a, b, s in zip(side_a, side_b, swapped, strict=True)]
        seconds = [a if s else b for a, b, s in zip(side_a, side_b, swapped, strict=True)]
        return network(**collate(firsts + seconds, pad_id, device)).float()
    return network(**collate(encode_pairs(tokenizer, rows, max_length, swapped), pad_id, device)).logits.float()
