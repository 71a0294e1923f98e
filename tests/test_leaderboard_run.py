"""The `leaderboard` stage end to end on a tiny battles file, and battle parsing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.leaderboard.settings import LeaderboardConfig
from cli import main as cli_main
from competition.config import load_config
from competition.errors import InputError
from data.battles import encode_models, outcomes_from_frame, read_battles, split_battles
from stages.leaderboard import run_leaderboard as run


def battles_csv(path, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    names = np.array(["alpha", "beta", "gamma", "delta"])
    strength = np.array([1.0, 0.4, 0.0, -0.8])
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n)
    winner = np.where(u < 0.15, "tie", np.where(u < 0.2, "both_bad", np.where(rng.random(n) < p, "model_a", "model_b")))
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "model_a": names[a], "model_b": names[b], "winner": winner}).to_csv(
        path, index=False
    )
    return path


def test_winner_column_and_both_bad_policies():
    frame = pd.DataFrame(
        {
            "model_a": ["x", "x", "y", "x", "z"],
            "model_b": ["y", "y", "x", "y", "z"],
            "winner": ["model_a", "tie", "model_b", "both_bad", "tie"],
        }
    )
    as_tie = outcomes_from_frame(frame, "tie")
    assert as_tie["outcome"].tolist() == [1.0, 0.5, 0.0, 0.5]  # the self-battle is dropped
    assert outcomes_from_frame(frame, "drop")["outcome"].tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(InputError, match="unknown winner"):
        outcomes_from_frame(frame.assign(winner="draw"), "tie")


def test_kaggle_label_columns_are_read_as_outcomes():
    frame = pd.DataFrame({"model_a": ["x", "x", "y"], "model_b": ["y", "y", "x"], "label": [0, 2, 1]})
    assert outcomes_from_frame(frame)["outcome"].tolist() == [1.0, 0.5, 0.0]


def test_random_split_is_seeded_and_row_order_split_holds_out_the_end():
    assert np.array_equal(split_battles(100, 0.2, 1), split_battles(100, 0.2, 1))
    assert split_battles(100, 0.2, 1).sum() == 20
    assert split_battles(10, 0.3, 0, "row_order").tolist() == [False] * 7 + [True] * 3


def test_run_writes_table_plot_and_summary_with_sensible_ratings(tmp_path):
    path = battles_csv(tmp_path / "battles.csv")
    cfg = load_config(
        LeaderboardConfig, None, [f"data.battles={str(path)!r}", f"runs_dir={str(tmp_path)!r}", "intervals.bootstrap_rounds=30"]
    )
    result = run(cfg)
    table = result.table
    assert table["model"].tolist() == ["alpha", "beta", "gamma", "delta"]
    assert table["rating"].mean() == pytest.approx(1000.0)
    assert (table["sandwich_lower"] < table["rating"]).all() and (table["rating"] < table["bootstrap_upper"]).all()
    assert table["rank_ub"].tolist()[0] == 1
    assert 0.55 < result.holdout["higher_rated_wins"] < 0.8
    assert result.run_dir == tmp_path / "leaderboard" / "sample"
    for name in ("leaderboard.csv", "leaderboard.png", "summary.json", "config.toml", "manifest.json"):
        assert (result.run_dir / name).exists()
    assert "holdout" in json.loads((result.run_dir / "summary.json").read_text())
    assert not table["too_few_battles"].any()


def test_anchor_model_gets_the_anchor_rating(tmp_path):
    path = battles_csv(tmp_path / "battles.csv", n=800)
    cfg = load_config(
        LeaderboardConfig,
        None,
        [f"data.battles={str(path)!r}", 'fit.anchor_model="gamma"', 'intervals.methods=["sandwich"]', "holdout.share=0"],
    )
    table = run(cfg, write=False).table.set_index("model")
    assert table.loc["gamma", "rating"] == pytest.approx(1000.0)


def test_cli_runs_and_reports_bad_input_in_one_line(tmp_path, capsys):
    path = battles_csv(tmp_path / "battles.csv", n=600)
    argv = ["leaderboard", "--train", str(path), "--out", str(tmp_path / "lb"), "--tie-model", "davidson", "--bootstrap", "0"]
    assert cli_main(argv) == 0
    table = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert "sandwich_lower" in table and "bootstrap_lower" not in table
    assert json.loads((tmp_path / "lb" / "manifest.json").read_text())["kind"] == "leaderboard"
    assert cli_main(["leaderboard", "--train", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "lb2")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not (tmp_path / "lb2").exists()
    assert cli_main(["leaderboard", "--train", str(path), "--set", f"runs_dir={str(tmp_path)!r}", "--name", "named"]) == 0
    assert (tmp_path / "named" / "leaderboard.csv").exists()  # runs_dir/<name>, as in every command


def test_a_model_with_too_few_battles_gets_no_interval_and_no_rank(tmp_path):
    """Two battles do not identify a rating: the sandwich would still give a narrow interval, so none is reported."""
    path = battles_csv(tmp_path / "battles.csv", n=1500)
    frame = pd.read_csv(path)
    rare = pd.DataFrame(
        {"id": ["x1", "x2"], "model_a": ["rare", "alpha"], "model_b": ["beta", "rare"], "winner": ["model_a", "tie"]}
    )
    pd.concat([frame, rare]).to_csv(path, index=False)
    sets = [f"data.battles={str(path)!r}", "intervals.bootstrap_rounds=20", "holdout.share=0"]
    table = run(load_config(LeaderboardConfig, None, sets), write=False).table.set_index("model")
    assert table.loc["rare", "battles"] == 2 and table.loc["rare", "too_few_battles"]
    for column in ("sandwich_lower", "sandwich_upper", "bootstrap_lower", "bootstrap_upper"):
        assert np.isnan(table.loc["rare", column])
        assert table.drop(index="rare")[column].notna().all()
    assert pd.isna(table.loc["rare", "rank_ub"]) and table.drop(index="rare")["rank_ub"].notna().all()
    assert np.isfinite(table.loc["rare", "rating"])
    # with the threshold at 0 the (misleadingly narrow) interval is shown
    shown = run(load_config(LeaderboardConfig, None, [*sets, "intervals.min_battles=0"]), write=False).table.set_index("model")
    assert not shown["too_few_battles"].any() and np.isfinite(shown.loc["rare", "sandwich_lower"])


def test_table_is_invariant_to_swapping_sides_and_renaming_models_in_the_file(tmp_path):
    path = battles_csv(tmp_path / "battles.csv", n=1500)
    frame = pd.read_csv(path)
    flip = {"model_a": "model_b", "model_b": "model_a", "tie": "tie", "both_bad": "both_bad"}
    swapped = frame.assign(model_a=frame["model_b"], model_b=frame["model_a"], winner=frame["winner"].map(flip))
    rename = {"alpha": "zeta", "beta": "eta", "gamma": "aaa", "delta": "mu"}  # changes the sorted order of models
    renamed = frame.assign(model_a=frame["model_a"].map(rename), model_b=frame["model_b"].map(rename))
    tables = []
    for name, variant in (("base", frame), ("swapped", swapped), ("renamed", renamed)):
        variant.to_csv(tmp_path / f"{name}.csv", index=False)
        sets = [f"data.battles={str(tmp_path / f'{name}.csv')!r}", 'intervals.methods=["sandwich"]', "holdout.share=0"]
        table = run(load_config(LeaderboardConfig, None, sets), write=False).table
        tables.append(
            table.assign(model=table["model"].map({v: k for k, v in rename.items()}) if name == "renamed" else table["model"])
        )
    base = tables[0].set_index("model")
    for other in tables[1:]:
        other = other.set_index("model").loc[base.index]
        assert np.allclose(
            other[["rating", "sandwich_lower", "sandwich_upper"]], base[["rating", "sandwich_lower", "sandwich_upper"]], atol=1e-3
        )


@pytest.mark.parametrize(
    "setting, message",
    [
        ('fit.tie_model="glicko"', "fit.tie_model"),
        ('intervals.methods=["jackknife"]', "intervals.methods"),
        ("intervals.level=95", "intervals.level"),
        ('holdout.split="time"', "holdout.split"),
    ],
)
def test_bad_settings_are_one_line_errors_before_any_fit(tmp_path, capsys, setting, message):
    path = battles_csv(tmp_path / "battles.csv", n=200)
    assert cli_main(["leaderboard", "--train", str(path), "--set", setting, "--out", str(tmp_path / "lb")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "lb").exists()


def test_label_columns_must_be_one_hot(tmp_path):
    frame = pd.DataFrame(
        {
            "model_a": ["x", "y"],
            "model_b": ["y", "x"],
            "winner_model_a": [1, "yes"],
            "winner_model_b": [0, 0],
            "winner_tie": [0, 0],
        }
    )
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="label must be 0 or 1"):
        read_battles(tmp_path / "bad.csv")
    frame.assign(winner_model_a=[1, 1], winner_model_b=[0, 1]).to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(InputError, match="not one-hot"):
        read_battles(tmp_path / "two.csv")
    frame.assign(winner_model_a=[1, 0], winner_model_b=[0, 1]).to_csv(tmp_path / "ok.csv", index=False)
    assert read_battles(tmp_path / "ok.csv")["outcome"].tolist() == [1.0, 0.0]


def test_encode_models_sorts_names_and_marks_unknown_ones():
    frame = pd.DataFrame({"model_a": ["gamma", "alpha", "zeta", "alpha"], "model_b": ["alpha", "beta", "gamma", "gamma"]})
    a, b, names = encode_models(frame)
    assert names == ["alpha", "beta", "gamma", "zeta"]
    assert a.tolist() == [2, 0, 3, 0] and b.tolist() == [0, 1, 2, 2]
    a, b, names = encode_models(frame, ["gamma", "alpha"])
    assert names == ["gamma", "alpha"] and a.tolist() == [0, 1, -1, 1] and b.tolist() == [1, -1, 0, 0]
    a, _, _ = encode_models(pd.DataFrame({"model_a": [None, "gamma"], "model_b": ["alpha", "alpha"]}), names)
    assert a.tolist() == [-1, 0]  # a missing name is unknown too
