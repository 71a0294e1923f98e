"""The task's fixed vocabulary: class ids, label columns and probability layout.

Every probability array in this project is float64 of shape (n, 3) in the order below.
"""

from __future__ import annotations

import numpy as np

LABEL_COLUMNS: tuple[str, str, str] = ("winner_model_a", "winner_model_b", "winner_tie")
CLASS_A, CLASS_B, CLASS_TIE = 0, 1, 2
N_CLASSES = 3
TEXT_COLUMNS: tuple[str, str, str] = ("prompt", "response_a", "response_b")
MODEL_COLUMNS: tuple[str, str] = ("model_a", "model_b")


def swap_labels(y: np.ndarray) -> np.ndarray:
    """Class ids after exchanging responses A and B (a tie stays a tie)."""
    swapped = np.asarray(y).copy()
    swapped[y == CLASS_A] = CLASS_B
    swapped[y == CLASS_B] = CLASS_A
    return swapped


def swap_probabilities(probs: np.ndarray) -> np.ndarray:
    """Probabilities after exchanging A and B: columns a and b trade places."""
    return np.asarray(probs, dtype=np.float64)[:, [CLASS_B, CLASS_A, CLASS_TIE]]


def one_hot(y: np.ndarray) -> np.ndarray:
    out = np.zeros((len(y), N_CLASSES), dtype=np.float64)
    out[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return out


def as_probabilities(probs: np.ndarray) -> np.ndarray:
    """Checks the (n, 3) contract and returns a float64 copy with rows summing to 1."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != N_CLASSES:
        raise ValueError(f"probabilities must have shape (n, 3), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    return arr / arr.sum(axis=1, keepdims=True)
