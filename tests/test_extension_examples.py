"""The three extension recipes of docs/architecture.md, executed: a feature group, a model family, a command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from cli import COMMANDS, main
from competition.crossfit import cross_fit
from competition.folds import fold_table
from data.loader import load_arena_csv
from features import registry
from features.paired import paired, swap_features
from models import registry as models
from tests.conftest import make_arena_frame


def exclamations(tf: pl.DataFrame) -> pl.DataFrame:
    """Recipe 1: a feature group is a pure function of the text frame, columns named group__a_/b_/diff_."""
    return paired(tf, "exclaim", lambda column: {"marks": pl.col(column).str.count_matches("!")})


def test_recipe_feature_group(monkeypatch, arena_csv):
    group = registry.FeatureGroup("exclaim", exclamations, version=1, cost="cheap")
    monkeypatch.setitem(registry.FEATURE_GROUPS, "exclaim", group)
    frame = load_arena_csv(arena_csv(n_prompts=3, rows_per_prompt=2), require_labels=True)
    table = registry.build_features(frame, ("lengths", "exclaim"))
    assert {"exclaim__a_marks", "exclaim__b_marks", "exclaim__diff_marks"} <= set(table.columns)
    swapped = swap_features(table)
    np.testing.assert_array_equal(swapped["exclaim__diff_marks"], -table["exclaim__diff_marks"])


class LongerWins:
    """Recipe 2: a model family is one class with the estimator face; this one favours the longer answer."""

    def __init__(self, strength: float = 1.0):
        self.strength = strength

    def fit(self, frame: pd.DataFrame, y: np.ndarray, groups=None) -> LongerWins:
        self.tie_rate_ = float(np.mean(np.asarray(y) == 2))
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        gap = frame["response_a"].map(lambda t: len("".join(x or "" for x in t))) - frame["response_b"].map(
            lambda t: len("".join(x or "" for x in t))
        )
        p_a = 1 / (1 + np.exp(-self.strength * gap.to_numpy() / 200))
        rest = 1 - self.tie_rate_
        return np.column_stack([rest * p_a, rest * (1 - p_a), np.full(len(frame), self.tie_rate_)])

    def save(self, directory) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        meta = {"family": "longer_wins", "strength": self.strength, "tie_rate": self.tie_rate_}
        (Path(directory) / "estimator.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory) -> LongerWins:
        meta = json.loads((Path(directory) / "estimator.json").read_text())
        model = cls(meta["strength"])
        model.tie_rate_ = meta["tie_rate"]
        return model


def test_recipe_model_family(monkeypatch, tmp_path, arena_csv):
    family = models.ModelFamily("longer_wins", f"{__name__}:LongerWins", "the longer answer wins")
    monkeypatch.setitem(models.FAMILIES, "longer_wins", family)  # the one line in models/registry.py
    frame = load_arena_csv(arena_csv(n_prompts=10, rows_per_prompt=4), require_labels=True)
    frame["group"] = frame["prompt"].map(str)
    y = frame["label"].to_numpy()
    folds = fold_table(frame["id"], frame["group"], y, 3, 0, None)["fold"].to_numpy()
    result = cross_fit(lambda fold: LongerWins(), frame, y, folds, frame["group"].to_numpy())
    assert result.oof.shape == (len(frame), 3) and result.scored.all()
    fitted = LongerWins().fit(frame, y)
    models.save_model(fitted, tmp_path / "model")
    loaded = models.load_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(frame), fitted.predict_proba(frame))


FAMILY_MODULE = """
from dataclasses import dataclass, field

from tests.test_extension_examples import LongerWins


@dataclass(frozen=True)
class LongerSettings:
    strength: float = 1.0


@dataclass(frozen=True)
class LongerWinsSettings:  # the family's config sections: here one, [longer]
    longer: LongerSettings = field(default_factory=LongerSettings)


class LongerWinsFamily(LongerWins):
    @classmethod
    def from_settings(cls, settings, seed):
        return cls(settings.longer.strength)
"""


def test_recipe_model_family_runs_under_cv_fit_and_predict(monkeypatch, tmp_path, arena_csv):
    """A family runnable from the CLI is three files: its module, one registry line, one config preset."""
    (tmp_path / "longer_wins_family.py").write_text(FAMILY_MODULE, encoding="utf-8")  # 1: the module
    monkeypatch.syspath_prepend(str(tmp_path))
    line = models.ModelFamily(  # 2: the line in models/registry.py
        "longer_wins", "longer_wins_family:LongerWinsFamily", "the longer answer wins", "longer_wins_family:LongerWinsSettings"
    )
    monkeypatch.setitem(models.FAMILIES, "longer_wins", line)
    preset = tmp_path / "longer_wins.toml"  # 3: the preset
    preset.write_text('family = "longer_wins"\nname = "longer"\n\n[longer]\nstrength = 2.0\n', encoding="utf-8")
    train, out = arena_csv(n_prompts=10, rows_per_prompt=4), tmp_path / "runs" / "longer"
    common = ["--config", str(preset), "--train", str(train), "--set", f"cv.fold_dir={str(tmp_path / 'folds')!r}"]
    assert main(["cv", *common, "--test", "", "--folds", "3", "--out", str(out)]) == 0
    oof = pd.read_parquet(out / "oof.parquet")
    assert len(oof) == 40 and json.loads((out / "manifest.json").read_text())["facts"]["family"] == "longer_wins"
    assert main(["fit", *common, "--out", str(out)]) == 0
    assert json.loads((out / "model" / "estimator.json").read_text())["strength"] == 2.0  # the preset's section was read
    submission = tmp_path / "sub.csv"
    assert main(["predict", "--model", str(out), "--test", str(train), "--submission", str(submission)]) == 0
    assert len(pd.read_csv(submission)) == 40


def test_recipe_command(monkeypatch, tmp_path, capsys):
    """Recipe 3: a command is a module with FLAGS (each bound to a config field) and main(args)."""
    import sys
    import types

    from cli.flags import CONFIG, SET, TRAIN, config_from_args
    from data.labelled import load_labelled
    from stages.training import training_config

    module = types.ModuleType("count_rows_command")
    module.FLAGS = {"count-rows": (CONFIG, TRAIN, SET)}

    def command_main(args) -> int:
        cfg = config_from_args(training_config("lgbm"), args, module.FLAGS["count-rows"])
        print(f"{len(load_labelled(cfg.data))} rows")
        return 0

    module.main = command_main
    monkeypatch.setitem(sys.modules, "count_rows_command", module)
    monkeypatch.setitem(COMMANDS, "count-rows", ("count_rows_command", "count training rows"))
    path = tmp_path / "train.csv"
    make_arena_frame(n_prompts=3, rows_per_prompt=2).to_csv(path, index=False)
    assert main(["count-rows", "--train", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "6 rows"
    assert main(["count-rows", "--folds", "3"]) == 2  # a flag it does not declare
