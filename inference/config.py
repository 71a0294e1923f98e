"""Config of `infer`. `configs/inference/*.toml` list only what they change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from competition.cluster import check_address
from competition.config import require
from competition.rundir import RunKind
from competition.settings import RunLocation
from inference.backends import BackendSpec

PLACEMENTS = ("balanced", "split")


@dataclass(frozen=True)
class DataConfig:
    test: str = "data/sample/test.csv"  # read whole: its predictions become submissions


@dataclass(frozen=True)
class ModelConfig:
    path: str = ""  # local model directory (config.json, tokenizer, weights); never downloaded
    backend: str = "transformers"  # transformers | vllm (GPU-only extra: requirements-vllm.txt)
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    quantize_4bit: bool = False
    # packed tokens per row; must match training. Unset: a fold model's own, else 1536 (or the model's
    # position limit when smaller)
    max_length: int | None = None
    base_models: tuple[str, ...] = ()  # folders where a fold model's base may be (moved since training); checked by identity
    accept_merged_4bit: bool = False  # score a 4-bit-trained fold model on merged weights (its probabilities move)
    tensor_parallel: int | None = None  # vLLM: GPUs per worker; unset: the fewest that hold the weights (inference/gpu_plan.py)

    def __post_init__(self) -> None:
        require(self.backend in ("transformers", "vllm"), "backend", "must be transformers or vllm")
        require(self.dtype in ("auto", "float32", "bfloat16", "float16"), "dtype", "must be auto, float32, bfloat16 or float16")
        require(self.max_length is None or 8 <= self.max_length <= 1_048_576, "max_length", "must be between 8 and 1048576")
        require(self.tensor_parallel is None or self.tensor_parallel >= 1, "tensor_parallel", "must be at least 1 (or unset)")

    def resolved_max_length(self) -> int:
        from inference.sources import default_max_length

        return self.max_length or default_max_length(self.path)


@dataclass(frozen=True)
class BatchConfig:
    token_budget: int = 16384  # padded tokens (rows × longest row) per batch
    max_batch_rows: int = 256
    shard_rows: int = 1024  # items per shard: the unit written to disk and skipped on a rerun
    sort: bool = True  # longest first; false keeps the file order (for comparisons only)

    def __post_init__(self) -> None:
        require(self.token_budget >= 1, "token_budget", "must be at least 1")
        require(self.max_batch_rows >= 1 and self.shard_rows >= 1, "max_batch_rows", "and shard_rows must be at least 1")


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class WorkerConfig:
    devices: str = "cpu"  # cpu | cpu:N | cuda | cuda:0,cuda:1 — one worker process per entry
    threads: int | None = None  # torch CPU threads per worker; default: cores / workers
    engine: str = "local"  # local: this machine's worker processes; ray: actors on a Ray cluster (inference/ray_engine.py)
    ray_address: str = ""  # ray engine: "" a local instance, "auto" this node's cluster, or HOST:PORT

    def __post_init__(self) -> None:
        require(self.threads is None or self.threads >= 1, "threads", "must be at least 1 (or unset)")
        require(self.engine in ENGINES, "engine", f"must be one of {', '.join(ENGINES)}")
        check_address(self.ray_address)
        require(not self.ray_address or self.engine == "ray", "ray_address", "is read only with engine = ray")


@dataclass(frozen=True)
class SwapConfig:
    # Average each row with its A/B-swapped twin (probabilities of a and b exchanged back).
    average: bool = False
    # balanced: both orders spread over all devices by tokens; split: original order on the first
    # half of the devices, swapped order on the other half (the winners' two-GPU layout).
    placement: str = "balanced"

    def __post_init__(self) -> None:
        require(self.placement in PLACEMENTS, "placement", f"must be one of {', '.join(PLACEMENTS)}")


@dataclass(frozen=True)
class InferenceConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.INFERENCE
    name: str = "inference/infer"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    batching: BatchConfig = field(default_factory=BatchConfig)
    workers: WorkerConfig = field(default_factory=WorkerConfig)
    swap: SwapConfig = field(default_factory=SwapConfig)

    def inputs(self) -> list[str | None]:
        return [self.data.test, self.model.path]

    def backend_spec(self) -> BackendSpec:
        m = self.model
        return BackendSpec(
            kind=m.backend,
            model_path=m.path,
            dtype=m.dtype,
            quantize_4bit=m.quantize_4bit,
            max_length=m.resolved_max_length(),
            base_models=m.base_models,
            accept_merged_4bit=m.accept_merged_4bit,
        )
