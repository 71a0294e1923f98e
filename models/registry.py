"""Model families by name: what `cv`, `fit`, `predict`, the blender and the cross-fit loop need to build or load one.

A new family is one module with a class that has the estimator face (competition/estimator.py), writes
`estimator.json` with `"family": <name>` in `save`, and builds itself with `from_settings(settings, seed)` from its
settings (a frozen dataclass whose fields are the family's config sections, e.g. `[lgbm]` and `[features]`), plus
one line in `FAMILIES` below. `cv --model <name>` then runs it, its sections read from the config file and `--set`.
Classes are imported only when used, so LightGBM commands never load torch.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from competition.errors import InputError
from competition.estimator import PreferenceEstimator
from competition.rundir import RunKind, read_manifest, staged_unit

META_FILE = "estimator.json"


def _imported(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelFamily:
    name: str
    path: str  # "module:Class" of the estimator
    description: str
    settings: str = "models.registry:NoSettings"  # "module:Class" of its config sections (a frozen dataclass)
    on_base_model: bool = False  # builds on a pretrained base: `load(directory, base_models)` is told where bases are

    def estimator_class(self) -> type[PreferenceEstimator]:
        return _imported(self.path)

    def settings_class(self) -> type:
        return _imported(self.settings)

    def build(self, settings, seed: int, **context) -> PreferenceEstimator:
        """A fresh estimator from the family's settings; a class without `from_settings` is built with no arguments."""
        cls = self.estimator_class()
        return cls.from_settings(settings, seed, **context) if hasattr(cls, "from_settings") else cls()


@dataclass(frozen=True)
class NoSettings:
    """The settings of a family that has none."""


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily(
            "lgbm", "models.lgbm:LGBMPreference", "LightGBM over the feature registry's groups", "models.lgbm:LGBMSettings"
        ),
        ModelFamily(
            "transformer",
            "models.transformer.estimator:TransformerPreference",
            "fine-tuned sequence classifier",
            "models.transformer.settings:TransformerSettings",
            on_base_model=True,
        ),
        ModelFamily(
            "pairwise_gbdt",
            "models.answer_gbdt:PairwiseGBDT",
            "LightGBM answer scores with a pairwise Davidson objective",
            "models.answer_gbdt:PairwiseSettings",
        ),
        ModelFamily(
            "p2l",
            "models.p2l.estimator:P2LPreference",
            "prompt-to-leaderboard (coefficients from the prompt)",
            "models.p2l.settings:P2LSettings",
        ),
    )
}


def family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise InputError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def save_model(estimator: PreferenceEstimator, directory: str | Path, facts: dict | None = None) -> Path:
    """Saves a fitted estimator as a unit: written to a staging folder, manifest, then renamed into place."""
    with staged_unit(directory, RunKind.MODEL, facts) as staging:
        estimator.save(staging)
    return Path(directory)


def read_meta(directory: str | Path, family_name: str, version: int | str | None = None, label: str = "") -> dict:
    """The estimator.json of a saved model of `family_name` (and format `version`); another family or format is one
    line naming the folder. Unreadable JSON raises as json does: each family's load reports it in its own words."""
    meta = json.loads((Path(directory) / META_FILE).read_text(encoding="utf-8"))
    if meta.get("family") != family_name or (version is not None and meta.get("version") != version):
        of_format = "" if version is None else f" of format {version}"
        raise InputError(f"not a {label or family_name} model{of_format} (found {meta.get('family')!r})", directory)
    return meta


def saved_family(directory: str | Path) -> str:
    path = Path(directory) / META_FILE
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["family"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"no readable {META_FILE} naming the model family", directory) from None


def load_model(directory: str | Path, base_models: tuple[str, ...] = ()) -> PreferenceEstimator:
    """Any saved model: the manifest is checked, then the family named in estimator.json loads it. `base_models`:
    folders where a family built on a pretrained base looks for it (other families do not need them)."""
    read_manifest(directory, RunKind.MODEL)
    chosen = family(saved_family(directory))
    cls = chosen.estimator_class()
    try:
        return cls.load(directory, base_models) if chosen.on_base_model else cls.load(directory)
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise InputError(f"cannot load this {cls.__name__} ({type(err).__name__}: {err})", directory) from None
