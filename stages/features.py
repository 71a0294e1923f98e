"""features: build a file's feature table in blocks of whole prompts, as parquet parts, in this process or as
tasks on a Ray cluster (features/parts.py); `cv --features-table RUN` and `fit --features-table RUN` read it.

Run directory: parts/ (part-<k>.parquet and parts.json, each sealed, written part by part: a killed build resumes) and,
once every part is there, summary.json, config.toml and manifest.json (a unit whose manifest names every part).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import ClassVar

from competition.cluster import check_address, reachable
from competition.config import require
from competition.rundir import RunKind, check_run, run_unit
from competition.settings import DataConfig, RunLocation
from features.registry import FeatureConfig


@dataclass(frozen=True)
class BuildConfig:
    engine: str = "local"
    ray_address: str = ""
    rows_per_block: int = 2000

    def __post_init__(self) -> None:
        require(self.engine in ("local", "ray"), "engine", "must be local or ray")
        require(self.rows_per_block >= 1, "rows_per_block", "must be at least 1")
        check_address(self.ray_address)
        require(not self.ray_address or self.engine == "ray", "ray_address", "is read only with engine = ray")


@dataclass(frozen=True)
class FeaturesConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.FEATURES
    name: str = "features"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(cache_dir=None))
    build: BuildConfig = field(default_factory=BuildConfig)

    def inputs(self) -> list[str | None]:
        return [self.data.train]


def run_features(cfg: FeaturesConfig) -> dict:
    from data.labelled import load_unlabelled
    from features.parts import PARTS_DIR, build_parts
    from features.registry import computed

    check_run(cfg)
    if cfg.build.engine == "ray":
        reachable(cfg.build.ray_address)  # an unreachable cluster is refused before the file is read
    start = time.perf_counter()
    frame = load_unlabelled(cfg.data.train)  # labels are not needed for features; prompt groups are
    if cfg.data.max_rows is not None:
        frame = frame.iloc[: cfg.data.max_rows]
    groups = computed(cfg.features.groups)
    facts = build_parts(
        frame,
        groups,
        frame["group"].to_numpy(),
        cfg.run_dir / PARTS_DIR,
        cfg.build.rows_per_block,
        cfg.build.engine,
        cfg.build.ray_address,
    )
    seconds = time.perf_counter() - start
    summary = facts | {"rows": len(frame), "groups": list(groups), "engine": cfg.build.engine, "seconds": seconds}
    summary["rows_per_second"] = len(frame) / seconds
    with run_unit(cfg, {"rows": len(frame)}, adopt=(PARTS_DIR,)) as staging:
        (staging / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
