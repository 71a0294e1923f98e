"""Config of `train-transformer`: one frozen dataclass, read from configs/transformer/*.toml."""

from __future__ import annotations

from dataclasses import dataclass, field

from competition.config import finite, require
from models.backbone import BackboneConfig

HEADS = ("cross", "reward")
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2", "flex_attention")
AUTOCASTS = ("weights", "bfloat16")
BATCHINGS = ("answers", "pairs")


@dataclass(frozen=True)
class ModelConfig(BackboneConfig):
    """`[model]`: the backbone (models/backbone.py) and how the classifier reads a pair."""

    head: str = "cross"  # cross: 3-way head on (prompt, A, B); reward: shared scalar head on (prompt, A), (prompt, B)
    # weights: activations in the weights' dtype (float32 weights run without autocast); bfloat16: bf16 autocast
    # over float32 weights (CPUs with AVX512-BF16/AMX, CUDA >= 8.0), the float32 master weights unchanged
    autocast: str = "weights"
    max_length: int = 512
    frozen_layers: int = 0  # the first N transformer layers get no updates (and no adapters)
    # true, false, or "auto": on only when training would not fit the GPU's memory without it (never on CPU)
    gradient_checkpointing: bool | str = False
    # auto: eager for soft-capped models (Gemma-2; flash_attention_2 when installed on CUDA >= 8.0), sdpa otherwise.
    # A fold model saves the implementation it trained with and is scored with it (models/transformer/attention.py)
    attn_implementation: str = "auto"
    random_init: bool = False  # benchmarks only: weights drawn from the config at model_path, no checkpoint read

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.head in HEADS, "head", f"must be one of {', '.join(HEADS)}")
        require(self.autocast in AUTOCASTS, "autocast", f"must be one of {', '.join(AUTOCASTS)}")
        require(8 <= self.max_length <= 1_048_576, "max_length", "must be between 8 and 1048576 tokens")
        require(self.frozen_layers >= 0, "frozen_layers", "must be >= 0")
        require(self.gradient_checkpointing in (True, False, "auto"), "gradient_checkpointing", "must be true, false or auto")
        require(self.attn_implementation in ATTENTION, "attn_implementation", f"must be one of {', '.join(ATTENTION)}")


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    max_steps: int | None = None  # optimizer steps; None: epochs decide
    checkpoint_every: int = 50  # optimizer steps between resumable checkpoints
    stop_after_steps: int | None = None  # stop as if killed after this many steps (tests, time-boxed runs)
    swap_augment: bool = True  # each example is shown with A and B exchanged with probability 1/2
    swap_average: bool = True  # predictions average the input and its A/B-swapped twin
    predict_tokens: int = 16384  # token budget of one prediction batch
    # GPU throughput switches (models/transformer/steps.py): each step's rows cut into forward passes of at most this
    # many padded tokens instead of batch_size rows (cross head; same gradient); rows of `bucket_batches` micro-batches
    # length-sorted together (1: no bucketing); AdamW's fused kernel where torch has one
    micro_batch_tokens: int | None = None
    bucket_batches: int = 16
    fused_optimizer: bool = False
    # reward head: answers = each step encodes each distinct (prompt, answer) side of its pairs once, pairs grouped
    # by prompt in units of `step_tokens` tokens (epochs count pairs); pairs = both sides of every pair each step
    batching: str = "answers"
    step_tokens: int = 4096  # answers batching: tokens of distinct sides in one micro-batch
    # answers batching: share of training prompts held out to pick the best of `evals_per_epoch` evaluations per
    # epoch (the weights kept); training stops after `patience` evaluations without improvement. 0: no hold-out
    early_stopping_share: float = 0.0
    evals_per_epoch: int = 2
    patience: int = 2
    max_train_rows: int | None = None  # subsample each fold's training part (CPU runs)
    max_valid_rows: int | None = None  # subsample each fold's scored part (CPU runs)
    only_folds: tuple[int, ...] = ()  # train these folds only; empty: all
    teacher: str = ""  # a LightGBM cv run whose recipe, refitted inside each fold, gives soft targets
    teacher_weight: float = 0.5  # share of the teacher's probabilities in each labelled row's target
    teacher_inner_folds: int = 4  # prompt-grouped folds inside the training rows on which the teacher is refitted
    seed: int = 42
    device: str = "auto"  # auto: cuda when present (cuda:LOCAL_RANK under torchrun), else cpu
    num_threads: int = 2  # CPU threads for torch

    def __post_init__(self) -> None:
        require(finite(self.learning_rate) and 0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        require(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(finite(self.epochs) and self.epochs > 0, "epochs", "must be > 0")
        require(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size", "and grad_accum must be at least 1")
        require(finite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1 (or unset)")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1")
        require(self.predict_tokens >= 1, "predict_tokens", "must be at least 1")
        require(
            self.micro_batch_tokens is None or self.micro_batch_tokens >= 8, "micro_batch_tokens", "must be at least 8 (or unset)"
        )
        require(self.bucket_batches >= 1, "bucket_batches", "must be at least 1")
        require(self.batching in BATCHINGS, "batching", f"must be one of {', '.join(BATCHINGS)}")
        require(self.step_tokens >= 8, "step_tokens", "must be at least 8")
        share = self.early_stopping_share
        require(finite(share) and 0 <= share < 1, "early_stopping_share", "must be in [0, 1)")
        require(self.evals_per_epoch >= 1 and self.patience >= 1, "evals_per_epoch", "and patience must be at least 1")
        for name in ("max_train_rows", "max_valid_rows", "stop_after_steps"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, "must be at least 1 (or unset)")
        require(all(f >= 0 for f in self.only_folds), "only_folds", "must hold fold numbers >= 0")
        require(1 <= self.num_threads <= 1024, "num_threads", "must be at least 1")
        require(finite(self.teacher_weight) and 0 <= self.teacher_weight <= 1, "teacher_weight", "must be in [0, 1]")
        require(self.teacher_inner_folds >= 2, "teacher_inner_folds", "must be at least 2")


@dataclass(frozen=True)
class TransformerSettings:
    """The transformer family's config sections: `[model]` and `[train]`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def family_inputs(self) -> list[str | None]:
        return [self.train.teacher, self.model.resolved_path()]

    def family_side_outputs(self) -> list[str | None]:
        return []
