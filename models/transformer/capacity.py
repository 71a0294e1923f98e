"""Sizes of a decoder architecture from its config.json alone: parameters, weight memory in each precision, the
memory of a training step with and without gradient checkpointing, and model FLOPs per token.

Used before anything is loaded: by the GPU plan (which backend, dtype and parallelism fit a GPU class), by
`gradient_checkpointing = "auto"` (on only when a step would not fit without it), and by bench/gpu_acceptance.py
(MFU). Estimates, stated with their sources:
- NF4 with double quantization stores 4 bits per weight plus about 0.127 bits of block constants (QLoRA paper);
  the embedding stays in the compute dtype. Gemma-2-9B in 4-bit: 5.7 GiB by this rule, 6.1 GiB measured on the
  H100 after loading (LoRA adapters and head included).
- A step's activations per layer and token: hidden × (34 + 5 · heads · T / hidden) bytes in 16-bit (Korthikanti et
  al. 2022, "Reducing activation recomputation"; the second term is eager attention's T × T scores). Gradient
  checkpointing keeps each layer's input (2 · hidden bytes per token) and one layer's activations at a time.
- Trainable parameters cost 16 bytes each: float32 master weight, gradient and Adam's two moments.
"""

from __future__ import annotations

NF4_BYTES_PER_WEIGHT = (4 + 0.127) / 8
TRAINABLE_BYTES = 16
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
STEP_RESERVE_BYTES = 1 << 30  # allocator slack, CUDA context, the head and loss


def architecture_shape(config: dict) -> dict:
    """Parameter counts and attention width from a Hugging Face config dict (Gemma-2 / Llama style)."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q, o and k, v projections
    mlp = 3 * hidden * inter
    per_layer = attention + mlp
    embedding = config["vocab_size"] * hidden
    return {
        "layers": layers,
        "hidden_size": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "attention_width": heads * head_dim,
        "parameters_without_embedding": per_layer * layers,
        "embedding_parameters": embedding,
        "parameters_total": per_layer * layers + embedding,
    }


def weight_bytes(shape: dict, dtype: str, quantize_4bit: bool) -> float:
    """Bytes of the weights on the device: the transformer layers in NF4 or `dtype`, the embedding in `dtype`."""
    per_weight = NF4_BYTES_PER_WEIGHT if quantize_4bit else DTYPE_BYTES[dtype]
    return shape["parameters_without_embedding"] * per_weight + shape["embedding_parameters"] * DTYPE_BYTES[dtype]


def activation_bytes(shape: dict, rows: int, length: int, checkpointing: bool) -> float:
    """Activations a training step keeps for its backward pass, for `rows` sequences of `length` tokens."""
    tokens = rows * length
    per_layer = tokens * shape["hidden_size"] * (34 + 5 * shape["heads"] * length / shape["hidden_size"])
    if checkpointing:
        return shape["layers"] * tokens * shape["hidden_size"] * 2 + per_layer
    return shape["layers"] * per_layer


def training_bytes(
    shape: dict, dtype: str, quantize_4bit: bool, trainable: int, rows: int, length: int, checkpointing: bool
) -> float:
    """Estimated peak memory of one training step on one device."""
    return (
        weight_bytes(shape, dtype, quantize_4bit)
        + trainable * TRAINABLE_BYTES
        + activation_bytes(shape, rows, length, checkpointing)
        + STEP_RESERVE_BYTES
    )


def model_flops_per_token(shape: dict, tokens: float, training: bool) -> float:
    """Model FLOPs per token (no recomputation): 2·N forward plus attention 4·L·d·T; training doubles it (input
    gradients only: the frozen base gets no weight gradients, LoRA's are negligible)."""
    forward = 2 * shape["parameters_without_embedding"] + 4 * shape["layers"] * shape["attention_width"] * tokens
    return 2 * forward if training else forward
