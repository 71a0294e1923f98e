from pathlib import Path

import pytest

from competition.config import load_config, parse_override, save_config
from competition.errors import InputError
from stages.training import training_config

SpineConfig = training_config("lgbm")


def test_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\n[lgbm]\nlearning_rate = 0.1\n[features]\ngroups = ["lengths"]\n')
    cfg = load_config(SpineConfig, path, ["lgbm.num_leaves=7", "cv.folds=3", "data.max_rows=50"])
    assert (cfg.name, cfg.lgbm.learning_rate, cfg.lgbm.num_leaves, cfg.cv.folds) == ("x", 0.1, 7, 3)
    assert cfg.features.groups == ("lengths",) and cfg.data.max_rows == 50
    assert cfg.lgbm.max_rounds == SpineConfig().lgbm.max_rounds  # untouched fields keep defaults


@pytest.mark.parametrize("override", ["lgbm.nope=1", "nosection.x=1", "cv.folds=abc", "lgbm.swap_augment=maybe"])
def test_unknown_or_mistyped_keys_are_errors(override):
    with pytest.raises(InputError, match="bad config"):
        load_config(SpineConfig, None, [override])


def test_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(SpineConfig, None, ["lgbm.learning_rate=0.2", 'features.groups=["lengths","markdown"]'])
    save_config(cfg, tmp_path / "c.toml")
    assert load_config(SpineConfig, tmp_path / "c.toml") == cfg


def test_parse_override_values():
    assert parse_override("a.b=1") == {"a": {"b": 1}}
    assert parse_override("a=text") == {"a": "text"}
    with pytest.raises(InputError):
        parse_override("novalue")


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].joinpath("configs", "lgbm").glob("*.toml")), ids=str)
def test_every_lgbm_preset_loads(path):
    cfg = load_config(SpineConfig, path)
    assert cfg.features.groups and cfg.lgbm.learning_rate > 0
