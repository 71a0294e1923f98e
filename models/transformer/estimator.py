"""`TransformerPreference`: a fine-tuned sequence classifier with the scikit-learn face of the LightGBM model."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from competition.atomic import write_text_atomic
from competition.config import config_from_data
from competition.errors import InputError
from competition.folds import prompt_groups
from competition.labels import N_CLASSES, as_probabilities, one_hot, swap_probabilities
from models.backbone import load_trainable, pick_device, save_trainable
from models.distill import soft_targets
from models.transformer.attention import attention_of
from models.transformer.batches import (
    OomBackoff,
    cut_batches,
    forward_logits,
    longest_first,
    predict_batch,
    score_with_backoff,
)
from models.transformer.heads import davidson_logits
from models.transformer.model_files import read_json_object
from models.transformer.packing import encode_pairs, encode_responses
from models.transformer.settings import ModelConfig, TrainConfig
from models.transformer.training import build_model, train_classifier

log = logging.getLogger(__name__)

WEIGHTS_FILE = "trainable.safetensors"
SETTINGS_FILE = "estimator.json"


SAVED_KEYS = ("family", "model", "train", "base")


def settings_from_saved(saved: dict, where: str | Path | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The configs that `save` wrote to estimator.json, checked as strictly as a config file."""
    unknown = sorted(set(saved) - set(SAVED_KEYS))
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} in saved settings (known: {', '.join(SAVED_KEYS)})", where)
    return config_from_data(ModelConfig, saved["model"], where), config_from_data(TrainConfig, saved["train"], where)


def _saved(directory: str | Path) -> dict | None:
    """estimator.json of a classifier saved in `directory`, or None for any other directory.

    LightGBM models write an estimator.json too; one without model and train settings is not ours.
    """
    path = Path(directory) / SETTINGS_FILE
    if not path.is_file():
        return None
    saved = read_json_object(path)
    return saved if {"model", "train"} <= saved.keys() else None


def saved_settings(directory: str | Path) -> tuple[ModelConfig, TrainConfig] | None:
    """The configs of a classifier saved in `directory` as saved (model_path: where its base was), or None."""
    saved = _saved(directory)
    return None if saved is None else settings_from_saved(saved, Path(directory) / SETTINGS_FILE)


def _package_dir(package: str) -> str:
    """Where an installed model package keeps its files on this machine ("" when it is not installed)."""
    if not package:
        return ""
    try:
        return ModelConfig(model_package=package).resolved_path()
    except InputError:
        return ""


def fold_model_settings(directory: str | Path, base_models=(), device=None) -> tuple[ModelConfig, TrainConfig]:
    """The configs to rebuild a saved classifier with: model_path is its base, found among `base_models` (else where
    it was trained) and checked by identity; with `device`, the attention implementation it trained with, or one
    computing the same function where that cannot run."""
    from models.backbone import load_tokenizer
    from models.transformer.attention import scoring_attention
    from models.transformer.model_files import locate_base, read_json_object, safetensors_header

    directory = Path(directory)
    saved = _saved(directory)
    if saved is None:
        raise InputError("not a saved transformer classifier (no estimator.json with its settings)", directory)
    model_cfg, train_cfg = settings_from_saved(saved, directory / SETTINGS_FILE)
    safetensors_header(directory / WEIGHTS_FILE)
    recorded = [model_cfg.model_path, _package_dir(model_cfg.model_package)]
    identity = saved.get("base")
    if isinstance(identity, dict):
        path = locate_base(identity, list(base_models), recorded, directory, load_tokenizer)
    else:  # saved before bases were recorded by identity: nothing to check them against
        log.warning("%s records no base model identity (an older version saved it): its base is not checked", directory)
        path = next((str(p) for p in [*base_models, *recorded] if p and Path(p).is_dir()), model_cfg.model_path)
    model_cfg = replace(model_cfg, model_path=path, model_package="")
    if device is not None:
        config = read_json_object(Path(path) / "config.json")
        model_cfg = replace(model_cfg, attn_implementation=scoring_attention(model_cfg.attn_implementation, config, device))
    return model_cfg, train_cfg


class TransformerPreference:
    """Three-way preference classifier over (prompt, response A, response B) conversations.

    fit(frame, y, groups) fine-tunes (LoRA or full) with A/B swap augmentation; with `train.teacher` the
    targets mix the labels with a LightGBM teacher refitted on prompt-grouped inner folds of the training rows
    (models/lgbm.teacher_probabilities), and `unlabeled` rows join with the teacher's probabilities alone.
    predict_proba averages each row with its swapped twin (the cross head) or scores each side once (the
    reward head, symmetric by construction). `checkpoint_dir` makes fit resumable after a kill.
    """

    def __init__(
        self,
        model: ModelConfig | None = None,
        train: TrainConfig | None = None,
        checkpoint_dir: str | Path | None = None,
        unlabeled: pd.DataFrame | None = None,
    ):
        self.model = model or ModelConfig()
        self.train = train or TrainConfig()
        self.checkpoint_dir = checkpoint_dir
        self.unlabeled = unlabeled

    @classmethod
    def from_settings(cls, settings, seed: int, checkpoint_dir=None, unlabeled=None) -> TransformerPreference:
        """`seed` is unused: training draws from `train.seed` (the same in every fold, as before)."""
        return cls(settings.model, settings.train, checkpoint_dir=checkpoint_dir, unlabeled=unlabeled)

    def _setup(self) -> None:
        self.device_ = pick_device(self.train.device)
        if self.device_.type == "cpu":
            torch.set_num_threads(self.train.num_threads)
        self.tokenizer_, self.network_ = build_model(self.model, self.device_, self.train.seed, self.train)
        self.attention_ = attention_of(self.network_)

    def _targets(self, frame: pd.DataFrame, y: np.ndarray, groups) -> tuple[pd.DataFrame, np.ndarray]:
        """The training rows (unlabeled ones appended) and their (n, 3) target distributions."""
        has_unlabeled = self.unlabeled is not None and len(self.unlabeled) > 0
        if not self.train.teacher:
            if has_unlabeled:
                raise InputError("unlabeled rows need a teacher for their targets: set train.teacher")
            return frame, one_hot(y)
        from models.lgbm import teacher_probabilities

        if groups is None:
            groups = prompt_groups(frame).to_numpy()
        labelled, pseudo = teacher_probabilities(
            self.train.teacher,
            frame,
            y,
            groups,
            self.train.teacher_inner_folds,
            self.train.seed,
            self.train.num_threads,
            self.unlabeled if has_unlabeled else None,
        )
        targets = soft_targets(y, labelled, self.train.teacher_weight)
        self.teacher_probs_ = labelled
        if pseudo is None:
            return frame, targets
        return pd.concat([frame, self.unlabeled], ignore_index=True), np.concatenate([targets, pseudo])

    def _answers_batched(self) -> bool:
        return self.model.head == "reward" and self.train.batching == "answers"

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups=None) -> TransformerPreference:
        """Fine-tunes on `frame`'s turn lists; `groups` (prompt ids) nest the teacher's refits by prompt."""
        y = np.asarray(y, dtype=np.int64)
        rows, targets = self._targets(frame, y, groups)
        self._setup()
        began = time.perf_counter()
        args = (self.network_, self.tokenizer_, rows, targets)
        if self._answers_batched():
            from models.transformer.reward_training import train_reward

            prompts = prompt_groups(rows).to_numpy()
            self.result_ = train_reward(*args, prompts, self.model, self.train, self.device_, self.checkpoint_dir)
        else:
            self.result_ = train_classifier(*args, self.model, self.train, self.device_, self.checkpoint_dir)
        # read by the cross-fit loop: the fold report's steps, and a time-boxed fold left to resume, not scored
        self.fit_facts_ = {"steps": self.result_.steps_done, "train_rows_with_unlabeled": len(rows)}
        self.fit_facts_["train_seconds"] = time.perf_counter() - began
        if self._answers_batched():
            result = self.result_
            self.fit_facts_ |= {"best_step": result.best_step, "early_stopped": result.early_stopped}
            self.fit_facts_ |= {"distinct_sides": result.sides, "side_passes": sum(result.step_sides)}
            if result.evaluations:
                self.fit_facts_["held_out_log_loss"] = min(loss for _, loss in result.evaluations)
        self.stopped_ = self.result_.stopped
        return self

    def _backoff(self) -> OomBackoff:
        """Out-of-memory splits (models/transformer/batches.py), kept across calls: a batch size that failed once is
        split before it is tried again."""
        if not hasattr(self, "backoff_"):
            self.backoff_ = OomBackoff()
        return self.backoff_

    def _batches(self, sequences: list[list[int]]):
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        return cut_batches(lengths, longest_first(lengths), self.train.predict_tokens)

    def _predict_side(self, frame: pd.DataFrame, swapped: bool) -> np.ndarray:
        """Probabilities of one A/B order, in batches cut by `train.predict_tokens` padded tokens, longest first."""
        sequences = encode_pairs(self.tokenizer_, frame, self.model.max_length, swapped)
        probs = np.zeros((len(sequences), N_CLASSES), dtype=np.float64)
        pad_id, backoff = self.tokenizer_.pad_token_id, self._backoff()
        for rows in self._batches(sequences):
            batch = [sequences[i] for i in rows]
            probs[rows] = score_with_backoff(
                lambda b: predict_batch(self.network_, b, pad_id, self.device_, self.model.autocast), batch, self.device_, backoff
            )
        return probs

    def _predict_reward(self, frame: pd.DataFrame) -> np.ndarray:
        """The pair's probabilities from its two sides' rewards; with answers batching each distinct (prompt,
        response) of the frame is scored once, else both sides of every row."""
        if self._answers_batched():
            from models.transformer.answers import side_table
            from models.transformer.reward_training import pair_probabilities

            table = side_table(self.tokenizer_, frame, self.model.max_length)
            return pair_probabilities(
                self.network_,
                table,
                np.arange(len(frame)),
                self.tokenizer_.pad_token_id,
                self.device_,
                self.train.predict_tokens,
                self.model.autocast,
            )
        sequences = [
            *encode_responses(self.tokenizer_, frame, self.model.max_length, "a"),
            *encode_responses(self.tokenizer_, frame, self.model.max_length, "b"),
        ]
        rewards = torch.zeros(len(sequences), dtype=torch.float64)
        pad_id, backoff = self.tokenizer_.pad_token_id, self._backoff()

        def score(batch):
            return forward_logits(self.network_.scorer, batch, pad_id, self.device_, self.model.autocast)[:, 0].cpu().numpy()

        for rows in self._batches(sequences):
            batch = [sequences[i] for i in rows]
            rewards[torch.as_tensor(rows)] = torch.from_numpy(score_with_backoff(score, batch, self.device_, backoff))
        n = len(frame)
        logits = davidson_logits(rewards[:n], rewards[n:], self.network_.log_tie.detach().double().cpu())
        return torch.softmax(logits, dim=-1).numpy()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, 3) float64 in the order a, b, tie; with swap_average, the mean over both A/B orders."""
        if not hasattr(self, "network_"):
            raise RuntimeError("fit or load the estimator first")
        self.network_.eval()
        if self.model.head == "reward":
            return as_probabilities(self._predict_reward(frame))
        probs = self._predict_side(frame, swapped=False)
        if self.train.swap_average:
            probs = (probs + swap_probabilities(self._predict_side(frame, swapped=True))) / 2
        return as_probabilities(probs)

    def release(self) -> None:
        """Frees the network (and the GPU memory it holds) once a fold is done with it."""
        self.__dict__.pop("network_", None)
        if torch.cuda.is_available():
            import gc

            gc.collect()
            torch.cuda.empty_cache()

    def save(self, directory: str | Path) -> Path:
        """Trainable weights (adapters + head, or all for a full fine-tune) and settings: the attention
        implementation it ran, and its base by identity (the folder may move; `load` takes where it is now)."""
        from models.transformer.model_files import base_identity

        directory = Path(directory)
        base = self.model.resolved_path()
        settings = {
            "family": "transformer",
            "model": asdict(self.model) | {"model_path": base, "attn_implementation": self.attention_},
            "train": asdict(self.train),
            "base": base_identity(base, self.tokenizer_),
        }
        save_trainable(self.network_, directory / WEIGHTS_FILE)
        write_text_atomic(directory / SETTINGS_FILE, json.dumps(settings, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, base_models=()) -> TransformerPreference:
        """A saved classifier on its base, found among `base_models` (folders) or where it was trained."""
        directory = Path(directory)
        saved = saved_settings(directory)
        if saved is None:
            raise InputError("no saved transformer classifier here", directory)
        settings = fold_model_settings(directory, base_models, pick_device(saved[1].device))
        estimator = cls(*settings)
        estimator._setup()
        load_trainable(estimator.network_, directory / WEIGHTS_FILE)
        estimator.network_.eval()
        return estimator
