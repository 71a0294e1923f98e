"""`PairwiseGBDT`: the pairwise-objective answer scorer (features/answer_score.py) as a model family of its own.

LightGBM scores each answer from its own and its prompt's hand features, trained on the pairs' Davidson
likelihood; a pair's probabilities come from the two scores' difference d = s_A − s_B through the same link,
P(a) ∝ exp(d/2), P(b) ∝ exp(−d/2), P(tie) ∝ ν. Exchanging A and B negates d, so P(a | A, B) = P(b | B, A)
with no swap averaging. Its out-of-fold predictions can be blended; nested inside LightGBM it is the
`answer_score` feature group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import InputError
from competition.labels import as_probabilities
from features.answer_score import AnswerScorer, davidson_log_probabilities
from features.registry import FeatureConfig, attach_features, computed, feature_columns
from features.trained import load_state, save_state
from models.registry import META_FILE, read_meta

FAMILY = "pairwise_gbdt"
SCORER_FILE = "answer_scorer.npz"
VERSION = 1


@dataclass(frozen=True)
class PairwiseSettings:
    """The family's config section: `[features]`, the computed groups each answer is scored from."""

    features: FeatureConfig = field(default_factory=FeatureConfig)

    def family_inputs(self) -> list[str | None]:
        return [self.features.table_dir]

    def family_side_outputs(self) -> list[str | None]:
        return [self.features.cache_dir]


class PairwiseGBDT:
    """`fit(frame, y, groups)` returns self, `predict_proba(frame)` gives (n, 3); `save`/`load` a folder."""

    def __init__(self, features: FeatureConfig | None = None, seed: int = 42, num_threads: int = 1):
        self.features = features or FeatureConfig()
        self.seed = seed
        self.num_threads = num_threads

    @classmethod
    def from_settings(cls, settings: PairwiseSettings, seed: int) -> PairwiseGBDT:
        return cls(settings.features, seed=seed)

    def described(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with the computed groups' columns: taken from the frame when it carries them, else built."""
        groups = computed(self.features.groups)
        if feature_columns(frame.columns, groups) is not None:
            return frame
        return attach_features(frame, groups, self.features.cache_dir)

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> PairwiseGBDT:
        described = self.described(frame)
        if groups is not None:  # the prompt groups the caller split on decide the early-stopping hold-out
            described = described.assign(group=np.asarray(groups))
        self.scorer_ = AnswerScorer(seed=self.seed, num_threads=self.num_threads).fit(described, np.asarray(y))
        self.fit_facts_ = {"rounds": self.scorer_.rounds_, "log_nu": self.scorer_.log_nu_}
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        a, b = self.scorer_.scores(self.described(frame))
        return as_probabilities(np.exp(davidson_log_probabilities(a - b, self.scorer_.log_nu_)))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_state(self.scorer_, directory / SCORER_FILE)
        meta = {"family": FAMILY, "version": VERSION, "groups": list(self.features.groups), "seed": self.seed}
        (directory / META_FILE).write_text(json.dumps(meta | {"num_threads": self.num_threads}, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> PairwiseGBDT:
        directory = Path(directory)
        try:
            meta = read_meta(directory, FAMILY, VERSION)
            model = cls(FeatureConfig(tuple(meta["groups"]), cache_dir=None), int(meta["seed"]), int(meta["num_threads"]))
            model.scorer_ = load_state("answer_score", directory / SCORER_FILE)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"unreadable {FAMILY} model ({type(err).__name__})", directory) from None
        return model
