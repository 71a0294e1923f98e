"""Model families by name: what `predict`, the blender and the cross-fit loop need to build or load one.

A new family is one module with a class that has the estimator face (competition/estimator.py) and
writes `estimator.json` with `"family": <name>` in `save`, plus one line in `FAMILIES` below.
Classes are imported only when used, so LightGBM commands never load torch.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from competition.errors import InputError
from competition.estimator import PreferenceEstimator
from competition.rundir import read_manifest, staged_unit

META_FILE = "estimator.json"
MODEL_KIND = "model"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    path: str  # "module:Class"
    description: str

    def estimator_class(self) -> type[PreferenceEstimator]:
        module, _, cls = self.path.partition(":")
        return getattr(importlib.import_module(module), cls)


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily("lgbm", "models.lgbm:LGBMPreference", "LightGBM over the feature registry's groups"),
        ModelFamily("transformer", "models.transformer.estimator:TransformerPreference", "fine-tuned sequence classifier"),
        ModelFamily("p2l", "models.p2l.estimator:P2LPreference", "prompt-to-leaderboard (coefficients from the prompt)"),
    )
}


def family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise InputError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def save_model(estimator: PreferenceEstimator, directory: str | Path, facts: dict | None = None) -> Path:
    """Saves a fitted estimator as a unit: written to a staging folder, manifest, then renamed into place."""
    with staged_unit(directory, MODEL_KIND, facts) as staging:
        estimator.save(staging)
    return Path(directory)


def saved_family(directory: str | Path) -> str:
    path = Path(directory) / META_FILE
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["family"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"no readable {META_FILE} naming the model family", directory) from None


def load_model(directory: str | Path) -> PreferenceEstimator:
    """Any saved model: the manifest is checked, then the family named in estimator.json loads it."""
    read_manifest(directory, MODEL_KIND)
    cls = family(saved_family(directory)).estimator_class()
    try:
        return cls.load(directory)
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise InputError(f"cannot load this {cls.__name__} ({type(err).__name__}: {err})", directory) from None
