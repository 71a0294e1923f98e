"""`P2LPreference`: Prompt-to-Leaderboard with the estimator face (competition/estimator.py).

It reads the prompt and the two model names, never the answers: the prompt gives every model a Bradley-Terry
coefficient and a tie parameter, and a battle's three-way probabilities follow from its two models'
coefficients (Davidson or Rao-Kupper ties). Swapping A and B swaps P(a) and P(b) exactly; relabelling
models permutes the coefficients. A model never seen in training meets any other as an even match at the
prompt's tie parameter.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from competition.atomic import atomic_path, write_text_atomic
from competition.errors import InputError
from competition.labels import as_probabilities
from data.battles import encode_models
from models.bradley_terry import three_way
from models.p2l.encoders import frozen_embeddings, prompt_columns, prompt_text
from models.p2l.head import OUTCOME_OF_LABEL, Battles, LinearHead, choose_penalty, fit_head, global_start, penalties
from models.p2l.settings import EncoderConfig, HeadConfig, TuneConfig
from models.registry import META_FILE, read_meta

FAMILY = "p2l"
HEAD_FILE = "head.npz"
WEIGHTS_FILE = "trainable.safetensors"


def check_battle_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in ("prompt", "model_a", "model_b") if c not in frame.columns]
    if missing:
        raise InputError("P2L reads the prompt and both model names; this file lacks a column", column=missing[0])


def unique_prompts(frame: pd.DataFrame) -> tuple[list[list[str | None]], np.ndarray]:
    """The distinct prompts (by their text) and each row's index into them."""
    texts = frame["prompt"].map(prompt_text)
    codes, _ = pd.factorize(texts)
    first = pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()
    return [frame["prompt"].iloc[i] for i in first], codes


class P2LPreference:
    """fit(frame, y, groups) on the frame's prompt, model_a, model_b; `coefficients(prompts)` gives the leaderboard of
    any prompt; predict_proba(frame) → (n, 3). The frozen encoder fits a ridge head (models/p2l/head.py), the
    finetune encoder trains backbone and head together (models/p2l/network.py)."""

    def __init__(
        self, encoder: EncoderConfig | None = None, head: HeadConfig | None = None, tune: TuneConfig | None = None, seed: int = 42
    ):
        self.encoder = encoder or EncoderConfig()
        self.head = head or HeadConfig()
        self.tune = tune or TuneConfig()
        self.seed = seed

    @classmethod
    def from_settings(cls, settings, seed: int) -> P2LPreference:
        return cls(settings.encoder, settings.head, settings.tune, seed=seed)

    def _columns(self, prompts: list[list[str | None]]) -> np.ndarray:
        """The embedding block, then (optionally) the registry block; `block_sizes_` records their widths."""
        from models.backbone import pick_device

        texts = [prompt_text(t) for t in prompts]
        parts = [frozen_embeddings(self.encoder, texts, pick_device(self.tune.device), self.tune.num_threads)]
        if self.encoder.prompt_features:
            parts.append(prompt_columns(prompts))
        self.block_sizes_ = (parts[0].shape[1], parts[1].shape[1] if len(parts) > 1 else 0)
        return np.hstack(parts)

    def _standardised(self, X: np.ndarray) -> np.ndarray:
        return (X - self.column_mean_) / self.column_scale_

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> P2LPreference:
        check_battle_frame(frame)
        a, b, self.models_ = encode_models(frame)
        prompts, codes = unique_prompts(frame)
        battles = Battles(codes, a, b, OUTCOME_OF_LABEL[np.asarray(y, dtype=np.int64)])
        if self.encoder.kind == "frozen":
            self._fit_frozen(prompts, battles)
        else:
            self._fit_network(prompts, battles)
        self.fit_facts_ |= {"prompts": len(prompts), "models": len(self.models_)}
        return self

    def _fit_frozen(self, prompts, battles: Battles) -> None:
        X = self._columns(prompts)
        self.column_mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.column_scale_ = np.where(scale > 0, scale, 1.0)
        X = self._standardised(X)
        k, h = len(self.models_), self.head
        self.l2_, inner = choose_penalty(
            X, battles, k, self.block_sizes_, h.grid, h.tie_l2_ratio, h.tie_model, h.inner_folds, self.seed, h.max_iter
        )
        penalty, tie_penalty = penalties(self.block_sizes_, self.l2_, h.tie_l2_ratio)
        start = global_start(battles, k, X.shape[1], h.tie_model)
        self.head_ = fit_head(X, battles, k, penalty, tie_penalty, h.tie_model, start, h.max_iter)
        self.fit_facts_ = {"l2_embedding": self.l2_[0], "l2_features": self.l2_[1]}
        self.fit_facts_["inner_log_loss"] = float(inner["inner_log_loss"].min())

    def _fit_network(self, prompts, battles: Battles) -> None:
        import torch

        from models.backbone import pick_device
        from models.p2l.encoders import tokenize
        from models.p2l.network import build_network, train_network

        self.device_ = pick_device(self.tune.device)
        if self.device_.type == "cpu":
            torch.set_num_threads(self.tune.num_threads)
        self.tokenizer_, self.network_ = build_network(self.encoder, len(self.models_), self.device_, self.seed)
        start = global_start(battles, len(self.models_), 0, self.head.tie_model)
        with torch.no_grad():
            self.network_.head.bias.copy_(torch.as_tensor(np.r_[start.bias, start.tie_bias], dtype=torch.float32))
        sequences = tokenize(self.tokenizer_, [prompt_text(t) for t in prompts], self.encoder.max_tokens)
        steps = train_network(
            self.network_, self.tokenizer_.pad_token_id, sequences, battles, self.head.tie_model, self.tune, self.device_
        )
        self.fit_facts_ = {"steps": steps}

    def coefficients(self, prompts: list[list[str | None]]) -> tuple[np.ndarray, np.ndarray]:
        """(n, K) Bradley-Terry coefficients (logits, centred per prompt, columns in the order of `models_`) and (n,)
        raw tie parameters (log ν for Davidson, log η for Rao-Kupper) of each prompt."""
        if not hasattr(self, "models_"):
            raise RuntimeError("fit or load the estimator first")
        if self.encoder.kind == "frozen":
            return self.head_.coefficients(self._standardised(self._columns(prompts)))
        from models.p2l.encoders import tokenize
        from models.p2l.network import network_coefficients

        sequences = tokenize(self.tokenizer_, [prompt_text(t) for t in prompts], self.encoder.max_tokens)
        theta, tie = network_coefficients(
            self.network_, self.tokenizer_.pad_token_id, sequences, self.encoder.batch_size, self.device_
        )
        return theta - theta.mean(axis=1, keepdims=True), tie

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, 3) float64 a, b, tie; exactly symmetric in A and B, so no swap averaging is needed."""
        check_battle_frame(frame)
        prompts, codes = unique_prompts(frame)
        theta, tie = self.coefficients(prompts)
        a, b, _ = encode_models(frame, self.models_)
        known = (a >= 0) & (b >= 0)
        d = np.where(known, theta[codes, np.maximum(a, 0)] - theta[codes, np.maximum(b, 0)], 0.0)
        return as_probabilities(three_way(d, tie[codes], self.head.tie_model, 0.0))

    def release(self) -> None:
        self.__dict__.pop("network_", None)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "family": FAMILY,
            "encoder": asdict(self.encoder),
            "head": asdict(self.head),
            "tune": asdict(self.tune),
            "seed": self.seed,
            "models": self.models_,
        }
        if self.encoder.kind == "frozen":
            meta |= {"l2": list(self.l2_)}
            arrays = {"mean": self.column_mean_, "scale": self.column_scale_, "bias": self.head_.bias}
            arrays |= {
                "tie_bias": np.array([self.head_.tie_bias]),
                "weights": self.head_.weights,
                "tie_weights": self.head_.tie_weights,
            }
            with atomic_path(directory / HEAD_FILE) as tmp:
                with tmp.open("wb") as handle:
                    np.savez(handle, **arrays)
        else:
            from models.backbone import save_trainable

            save_trainable(self.network_, directory / WEIGHTS_FILE)
        write_text_atomic(directory / META_FILE, json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> P2LPreference:
        directory = Path(directory)
        meta = read_meta(directory, FAMILY)

        def build(config_class, values: dict):
            return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        estimator = cls(build(EncoderConfig, meta["encoder"]), build(HeadConfig, meta["head"]), build(TuneConfig, meta["tune"]))
        estimator.seed, estimator.models_ = int(meta["seed"]), list(meta["models"])
        if estimator.encoder.kind == "frozen":
            with np.load(directory / HEAD_FILE) as arrays:
                estimator.column_mean_, estimator.column_scale_ = arrays["mean"], arrays["scale"]
                estimator.head_ = LinearHead(
                    arrays["bias"], float(arrays["tie_bias"][0]), arrays["weights"], arrays["tie_weights"]
                )
            estimator.l2_ = tuple(meta["l2"])
            return estimator
        estimator._load_network(directory)
        return estimator

    def _load_network(self, directory: Path) -> None:
        import torch

        from models.backbone import load_trainable, pick_device
        from models.p2l.network import build_network

        self.device_ = pick_device(self.tune.device)
        if self.device_.type == "cpu":
            torch.set_num_threads(self.tune.num_threads)
        self.tokenizer_, self.network_ = build_network(self.encoder, len(self.models_), self.device_, self.seed)
        load_trainable(self.network_, directory / WEIGHTS_FILE)
        self.network_.eval()
