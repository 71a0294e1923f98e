"""One attention implementation per model: chosen once when a fold model is trained, recorded with it, used
unchanged wherever it is scored.

Gemma-2 soft-caps its attention scores (c·tanh(s/c)); a kernel that skips the cap computes another function. Left
to the library, the choice moved between releases (transformers 5.17 ran Gemma-2 on sdpa without the cap, 5.24
defaults to eager, vLLM always caps), so the same fold model was a different function on another machine. Rules:
- `auto` for a model whose config sets `attn_logit_softcapping`: flash_attention_2 when flash-attn is installed
  and the GPU has compute capability 8 or more (its kernels cap), else eager; for any other model sdpa (PyTorch's
  fused kernels), or eager where the architecture has no sdpa path.
- The resolved name is saved in estimator.json. Where it cannot run (flash-attn missing, a T4), a kernel that
  computes the same function stands in: eager for a soft-capped model, sdpa otherwise (logged).
- vLLM caps Gemma-2 whatever it is told: a soft-capped model trained without the cap is refused there.
"""

from __future__ import annotations

import importlib.util
import logging

from competition.errors import InputError

log = logging.getLogger(__name__)

IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flex_attention")
SOFTCAPPING = ("eager", "flash_attention_2", "flex_attention")  # the implementations that apply the cap


def soft_caps(config) -> bool:
    """Whether the architecture caps its attention scores (`config` a PretrainedConfig or config.json's dict)."""
    value = config.get("attn_logit_softcapping") if isinstance(config, dict) else getattr(config, "attn_logit_softcapping", None)
    return value is not None


def flash_available(device) -> bool:
    import torch

    device = torch.device(device)
    if device.type != "cuda" or importlib.util.find_spec("flash_attn") is None:
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def choose_attention(requested: str, config, device) -> str:
    """The implementation to train with: `requested`, or the rule above for `auto`."""
    if requested not in IMPLEMENTATIONS:
        raise InputError(f"unknown attention implementation {requested!r} (known: {', '.join(IMPLEMENTATIONS)})")
    if requested != "auto":
        return requested
    if soft_caps(config):
        return "flash_attention_2" if flash_available(device) else "eager"
    return "sdpa"


def scoring_attention(recorded: str, config, device) -> str:
    """The implementation to score a fold model with: the one it was trained with, or one computing the same
    function when that cannot run on `device`."""
    if recorded == "auto":  # a fold model saved before the choice was recorded
        log.warning("this fold model does not record its attention implementation: scored with the rule for auto")
        return choose_attention("auto", config, device)
    if recorded == "flash_attention_2" and not flash_available(device):
        substitute = "eager" if soft_caps(config) else "sdpa"
        log.info("flash_attention_2 cannot run on %s here: %s computes the same function", device, substitute)
        return substitute
    return recorded


def check_vllm_attention(recorded: str, config, where) -> None:
    """vLLM caps a soft-capped architecture's scores: a model trained without the cap would change under it."""
    if soft_caps(config) and recorded not in (*SOFTCAPPING, "auto"):
        raise InputError(
            f"trained with {recorded} attention, which skips this architecture's soft-capping; vLLM always applies it: "
            "score it with the transformers backend",
            where,
        )


def attention_of(network) -> str | None:
    """The implementation a loaded network runs (through peft and reward wrappers)."""
    for module in network.modules():
        config = getattr(module, "config", None)
        name = getattr(config, "_attn_implementation", None)
        if name:
            return str(name)
    return None
