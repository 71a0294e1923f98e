"""`TransformerPreference`: a fine-tuned sequence classifier with the scikit-learn face of the LightGBM model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from competition.atomic import atomic_path, write_text_atomic
from competition.errors import InputError
from competition.labels import as_probabilities, swap_probabilities
from models.transformer.packing import pack_pair
from models.transformer.settings import ModelConfig, TrainConfig
from models.transformer.training import build_model, collate, load_trainable_state, pick_device, train_classifier, trainable_state

WEIGHTS_FILE = "trainable.safetensors"
SETTINGS_FILE = "estimator.json"


def token_budget_batches(lengths: list[int], max_tokens: int) -> list[np.ndarray]:
    """Row indices grouped longest first, each batch's padded size (rows x longest) within `max_tokens`."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[current[0]] > max_tokens:
            batches.append(np.asarray(current))
            current = []
        current.append(i)
    if current:
        batches.append(np.asarray(current))
    return batches


class TransformerPreference:
    """Three-way preference classifier over (prompt, response A, response B) conversations.

    fit(frame, y) fine-tunes (LoRA or full) with A/B swap augmentation; predict_proba averages each
    row with its swapped twin. `checkpoint_dir` makes fit resumable after a kill.
    """

    def __init__(
        self, model: ModelConfig | None = None, train: TrainConfig | None = None, checkpoint_dir: str | Path | None = None
    ):
        self.model = model or ModelConfig()
        self.train = train or TrainConfig()
        self.checkpoint_dir = checkpoint_dir

    def _setup(self) -> None:
        self.device_ = pick_device(self.train.device)
        if self.device_.type == "cpu":
            torch.set_num_threads(self.train.num_threads)
        self.tokenizer_, self.network_ = build_model(self.model, self.device_, self.train.seed)

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups=None) -> TransformerPreference:
        """Fine-tunes on `frame`'s turn lists; `groups` is accepted for the shared estimator face and unused."""
        self._setup()
        self.result_ = train_classifier(
            self.network_, self.tokenizer_, frame, y, self.model, self.train, self.device_, self.checkpoint_dir
        )
        return self

    def pack(self, frame: pd.DataFrame, swapped: bool = False) -> list[list[int]]:
        rows = zip(frame["prompt"], frame["response_a"], frame["response_b"], strict=True)
        if swapped:
            return [pack_pair(self.tokenizer_, p, b, a, self.model.max_length) for p, a, b in rows]
        return [pack_pair(self.tokenizer_, p, a, b, self.model.max_length) for p, a, b in rows]

    @torch.inference_mode()
    def _predict_packed(self, sequences: list[list[int]]) -> np.ndarray:
        self.network_.eval()
        probs = np.zeros((len(sequences), 3), dtype=np.float64)
        for rows in token_budget_batches([len(s) for s in sequences], self.train.predict_tokens):
            batch = collate([sequences[i] for i in rows], self.tokenizer_.pad_token_id, self.device_)
            logits = self.network_(**batch).logits.float()
            probs[rows] = torch.softmax(logits, dim=-1).double().cpu().numpy()
        return probs

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, 3) float64 in the order a, b, tie; with swap_average, the mean over both A/B orders."""
        if not hasattr(self, "network_"):
            raise RuntimeError("fit or load the estimator first")
        probs = self._predict_packed(self.pack(frame))
        if self.train.swap_average:
            probs = (probs + swap_probabilities(self._predict_packed(self.pack(frame, swapped=True)))) / 2
        return as_probabilities(probs)

    def save(self, directory: str | Path) -> Path:
        """Trainable weights (adapters + head, or all for a full fine-tune) and settings; the base stays at model_path."""
        from safetensors.torch import save_file

        directory = Path(directory)
        settings = {"model": asdict(self.model) | {"model_path": self.model.resolved_path()}, "train": asdict(self.train)}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(trainable_state(self.network_), str(tmp))
        write_text_atomic(directory / SETTINGS_FILE, json.dumps(settings, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TransformerPreference:
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / SETTINGS_FILE).exists():
            raise InputError("no saved transformer classifier here", directory)
        settings = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        model = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["model"].items()})
        train = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["train"].items()})
        estimator = cls(model, train)
        estimator._setup()
        load_trainable_state(estimator.network_, load_file(str(directory / WEIGHTS_FILE)), directory)
        estimator.network_.eval()
        return estimator
