"""`bundle`: a folder a Kaggle dataset can hold, scored offline with one entry point (`python submit.py ...`).

Layout (a unit: manifest.json names every file but the runs', which have their own manifests):
  submit.py        the entry point, standard library only (a copy of stages/bundle_entry.py): checks every file against
                   manifest.json, installs wheels/ into a private folder of the working directory, then runs
                   `python -m competition submit --config submit.toml` from project/ in a subprocess, offline
  project/         the project's packages (*.py files), requirements.txt, pyproject.toml, submit.toml
  project/runs/    the chosen runs as units with their manifests: the blend, a fitted model's run (its model/), a
                   train-transformer run (its finished folds' fold models); nothing else of theirs
  wheels/          wheels the Kaggle image lacks (copied from --wheels-dir, made beforehand by `pip download`)

Why a folder run as a subprocess rather than an installed package: the top-level packages have generic names
(data, models, features, inference, ensemble, analysis). Installed into the image's site-packages they could shadow,
or be shadowed by, packages of those names; renaming them under one namespace would rewrite every import of the
project. Run from its own folder, nothing of the project enters the notebook's interpreter or site-packages, and
inside the scoring process its folder comes first on the path; submit.py names every package of the image that
one of ours shadows there, so a clash is seen, not guessed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from competition.config import require, save_config
from competition.errors import InputError
from competition.rundir import MANIFEST_FILE, RunKind, check_outputs, read_manifest, staged_unit
from competition.settings import RunLocation
from stages.submit import ScoringConfig, SubmitConfig, blend_plan, check_component

BUNDLE_KIND = RunKind.BUNDLE
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("competition", "cli", "stages", "data", "features", "models", "inference", "ensemble", "analysis")
PROJECT_FILES = ("requirements.txt", "pyproject.toml")
ENTRY_POINT = "submit.py"
SUBMIT_CONFIG = "submit.toml"
KAGGLE_SECONDS = 9 * 3600  # the competition's notebook limit


@dataclass(frozen=True)
class BundleConfig(RunLocation):
    name: str = "kaggle"
    runs_dir: str = "bundles"
    blend: str = ""  # a blend run (its runs come with it), or
    runs: tuple[str, ...] = ()  # one run alone
    base_models: tuple[str, ...] = ()  # where fold models' bases lie now: checked here, never copied
    wheels_dir: str = ""  # *.whl to carry (made by `pip download`; see docs/kaggle.md)
    # the defaults of the entry point on Kaggle: both T4s, and an hour spare of the nine
    time_budget_s: float = KAGGLE_SECONDS - 3600
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(devices="gpu:2"))

    def __post_init__(self) -> None:
        require(self.time_budget_s >= 0, "time_budget_s", "must be >= 0 (0: none)")


def copy_unit(source: Path, target: Path, nested) -> None:
    """The files `source`'s manifest names (checked), its manifest, and the nested units `nested(relative path)` keeps."""
    manifest = read_manifest(source)
    for name in manifest["files"]:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    shutil.copy2(source / MANIFEST_FILE, target / MANIFEST_FILE)
    for child in sorted(p for p in source.rglob(MANIFEST_FILE) if p.parent != source):
        relative = child.parent.relative_to(source)
        if nested(relative) and not any(
            (source / parent / MANIFEST_FILE).exists() for parent in relative.parents if parent != Path(".")
        ):
            copy_unit(child.parent, target / relative, lambda rel: True)


def scored_units(relative: Path) -> bool:
    """The nested units a run scores with: `fit`'s model/ and a train-transformer run's finished folds."""
    return relative == Path("model") or (len(relative.parts) == 2 and relative.parts[0] == "folds")


def project_files() -> list[Path]:
    files = [ROOT / name for name in PROJECT_FILES if (ROOT / name).is_file()]
    for package in PACKAGES:
        files += sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def run(cfg: BundleConfig) -> dict:
    """Writes the bundle as a unit; returns what it holds."""
    submit_cfg = SubmitConfig(blend=cfg.blend, runs=cfg.runs, base_models=cfg.base_models)
    components, weights, _ = blend_plan(submit_cfg)
    names = [c.run_dir.name for c in components] + ([Path(cfg.blend).name] if cfg.blend else [])
    if len(set(names)) != len(names):
        raise InputError(
            f"two runs share the folder name {sorted(n for n in names if names.count(n) > 1)[0]!r}: the bundle keeps runs by name"
        )
    for comp in components:
        check_component(comp, submit_cfg)  # fold models' bases are found and match: the bundle would not score otherwise
    wheels = sorted(Path(cfg.wheels_dir).glob("*.whl")) if cfg.wheels_dir else []
    if cfg.wheels_dir and not Path(cfg.wheels_dir).is_dir():
        raise InputError("wheels folder not found", cfg.wheels_dir)
    inputs = [cfg.blend, *(c.run_dir for c in components), *cfg.base_models, cfg.wheels_dir, *(ROOT / p for p in PACKAGES)]
    check_outputs([], inputs, cfg.run_dir, BUNDLE_KIND)
    with staged_unit(cfg.run_dir, BUNDLE_KIND, {"runs": names, "wheels": [w.name for w in wheels]}) as staging:
        project = staging / "project"
        for file in project_files():
            (project / file.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, project / file.relative_to(ROOT))
        for comp in components:
            copy_unit(comp.run_dir, project / "runs" / comp.run_dir.name, scored_units)
        if cfg.blend:
            copy_unit(Path(cfg.blend), project / "runs" / Path(cfg.blend).name, lambda rel: False)
        inside = SubmitConfig(
            name="submit",
            blend=f"runs/{Path(cfg.blend).name}" if cfg.blend else "",
            runs=tuple(f"runs/{c.run_dir.name}" for c in components),
            time_budget_s=cfg.time_budget_s,
            scoring=cfg.scoring,
        )
        save_config(inside, project / SUBMIT_CONFIG)
        (staging / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, staging / "wheels" / wheel.name)
        shutil.copy2(ROOT / "stages" / "bundle_entry.py", staging / ENTRY_POINT)
    size = sum(p.stat().st_size for p in cfg.run_dir.rglob("*") if p.is_file())
    return {
        "bundle": str(cfg.run_dir),
        "runs": names,
        "weights": weights.tolist(),
        "wheels": [w.name for w in wheels],
        "bytes": size,
    }
