"""The explicit table of feature groups, and the function that builds (and caches) a feature table.

A group is a pure function text-frame → columns named `group__kind_name`. Ablation drops groups by
name; a model's column list says which groups built it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl

from competition.config import require
from competition.errors import InputError
from competition.folds import prompt_groups
from competition.rundir import ABSENT, SEALED, UNSEALED, WHY, seal_state, write_sealed
from features import answer_score, author, consensus, lengths, markdown, model_names, nulls, overlap, refusal, style
from features.text import text_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureGroup:
    """A computed group maps the text frame to columns (`compute`); a trained group (`trainer`) is a class
    with fit(frame, y) / transform(frame) / state() / from_state(), fitted inside each fold (features/trained.py)."""

    name: str
    compute: Callable[[pl.DataFrame], pl.DataFrame] | None
    version: int
    cost: str  # "cheap": a few regex passes; "moderate": word sets or joins over the batch; "trained": fitted per fold
    default: bool = True
    categorical: tuple[str, ...] = ()
    trainer: type | None = None


FEATURE_GROUPS: dict[str, FeatureGroup] = {
    g.name: g
    for g in (
        FeatureGroup("lengths", lengths.length_features, lengths.VERSION, "cheap"),
        FeatureGroup("markdown", markdown.markdown_features, markdown.VERSION, "cheap"),
        FeatureGroup("refusal", refusal.refusal_features, refusal.VERSION, "cheap"),
        FeatureGroup("nulls", nulls.null_features, nulls.VERSION, "cheap"),
        FeatureGroup("style", style.style_features, style.VERSION, "cheap"),
        FeatureGroup("duplicates", overlap.duplicate_features, overlap.VERSION, "moderate"),
        FeatureGroup("similarity", overlap.similarity_features, overlap.VERSION, "moderate"),
        FeatureGroup("consensus", consensus.consensus_features, consensus.VERSION, "moderate"),
        FeatureGroup("author", None, author.VERSION, "trained", default=False, trainer=author.AuthorModel),
        FeatureGroup("answer_score", None, answer_score.VERSION, "trained", default=False, trainer=answer_score.AnswerScorer),
        FeatureGroup(
            "model_names",
            model_names.model_name_features,
            model_names.VERSION,
            "cheap",
            default=False,
            categorical=("model_names__a_code", "model_names__b_code"),
        ),
    )
}
DEFAULT_GROUPS: tuple[str, ...] = tuple(name for name, g in FEATURE_GROUPS.items() if g.default)


@dataclass(frozen=True)
class FeatureConfig:
    groups: tuple[str, ...] = DEFAULT_GROUPS
    cache_dir: str | None = "runs/cache/features"
    # a feature table of the training file built by `features` (parquet parts): read instead of computed
    table_dir: str | None = None

    def __post_init__(self) -> None:
        require(len(self.groups) > 0, "groups", "must name at least one feature group")
        require(len(set(self.groups)) == len(self.groups), "groups", "must not repeat a group")
        unknown = [g for g in self.groups if g not in FEATURE_GROUPS]
        require(not unknown, "groups", f"has unknown group {unknown[:1]} (known: {', '.join(FEATURE_GROUPS)})")


def resolve_groups(names: tuple[str, ...] | list[str]) -> list[FeatureGroup]:
    unknown = [n for n in names if n not in FEATURE_GROUPS]
    if unknown:
        raise InputError(f"unknown feature group {unknown[0]!r} (known: {', '.join(FEATURE_GROUPS)})")
    return [FEATURE_GROUPS[n] for n in names]


def computed(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(g for g in groups if FEATURE_GROUPS[g].trainer is None)


def trained(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(g for g in groups if FEATURE_GROUPS[g].trainer is not None)


def group_of(column: str) -> str:
    return column.split("__", 1)[0]


def categorical_columns(columns: list[str]) -> list[str]:
    wanted = {c for g in FEATURE_GROUPS.values() for c in g.categorical}
    return [c for c in columns if c in wanted]


def _fingerprint(tf: pl.DataFrame) -> str:
    # polars' hash is only stable within one polars version, so the version is part of the key.
    hashes = tf.select(pl.exclude("^.*_words$")).hash_rows(seed=0)
    return hashlib.sha1(hashes.to_numpy().tobytes() + pl.__version__.encode()).hexdigest()[:16]


def build_features(frame: pd.DataFrame, groups: tuple[str, ...] | list[str], cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Feature table (float64, one row per input row, in input order) for the named groups.

    With `cache_dir`, each group's columns are read from / written to parquet keyed by the data and the
    group's version, so ablation and repeated CV skip the extraction; a cached file is sealed (competition/rundir.py)
    and one that does not match its seal is computed again.
    """
    selected = resolve_groups(groups)
    if any(g.trainer is not None for g in selected):
        raise ValueError(f"trained feature groups {trained(groups)} are fitted by the estimator, not built here")
    if "model_names" in groups and "model_a" not in frame.columns:
        raise InputError("feature group 'model_names' needs model_a/model_b columns; drop it for files without them")
    if "group" not in frame.columns:
        frame = frame.assign(group=prompt_groups(frame).to_numpy())
    tf = text_frame(frame)
    fingerprint = _fingerprint(tf) if cache_dir else ""

    def one_group(group: FeatureGroup) -> pl.DataFrame:
        cached = Path(cache_dir) / f"{group.name}-v{group.version}-{fingerprint}.parquet" if cache_dir else None
        if cached is not None:
            state = seal_state(cached, fingerprint)
            if state == SEALED:
                return pl.read_parquet(cached)
            if state not in (ABSENT, UNSEALED):
                log.warning("cached features %s %s: computed again", cached, WHY[state])
        part = group.compute(tf)
        if part.height != len(frame):
            raise RuntimeError(f"feature group {group.name} returned {part.height} rows for {len(frame)}")
        if cached is not None:
            write_sealed(cached, part.write_parquet, fingerprint)
        return part

    # polars releases the GIL: two groups at once keep both cores busy through each group's serial steps.
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(one_group, selected))
    table = pl.concat(parts, how="horizontal").to_pandas().astype("float64")
    table.index = frame.index
    return table


def feature_columns(columns, groups: tuple[str, ...] | list[str]) -> list[str] | None:
    """The columns of `groups` among `columns` in their order, or None when some group has none there."""
    wanted = set(groups)
    found = [c for c in columns if "__" in c and group_of(c) in wanted]
    return found if {group_of(c) for c in found} == wanted else None


def as_alone(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as if each were the only answer pair to its prompt in its file: each row its own prompt group.

    Groups that look across a file's answers to one prompt (consensus) then see just the row's own two
    answers, as on a Kaggle test file where most prompts appear once: the "alone" scoring mode.
    """
    return frame.assign(group=frame["id"].astype(str).to_numpy())


def attach_features(
    frame: pd.DataFrame, groups: tuple[str, ...] | list[str], cache_dir: str | Path | None = None, alone: bool = False
) -> pd.DataFrame:
    """`frame` with the feature columns of `groups` added, computed over the whole frame at once (with `alone`,
    as if each row were alone in its file; the frame's own prompt groups are kept).

    Estimators that read features (LightGBM) take them from the frame when present, so a cross-fit loop
    computes each group once per file instead of once per fold, with identical values.
    """
    table = build_features(as_alone(frame) if alone else frame, computed(groups), cache_dir)
    kept = frame.drop(columns=[c for c in frame.columns if c in table.columns])
    return pd.concat([kept, table], axis=1)


def attach_features_alone(
    frame: pd.DataFrame, groups: tuple[str, ...] | list[str], cache_dir: str | Path | None = None
) -> pd.DataFrame:
    return attach_features(frame, groups, cache_dir, alone=True)
