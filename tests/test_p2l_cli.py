"""train-p2l end to end through the CLI on simulated battles, and the uses of its run: blend, predict,
prompt-leaderboard --p2l (one prompt, a file of prompts) and route --p2l."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli import command_parser, main
from cli.flags import config_from_args
from competition.crossfit import cross_fit, write_cross_fit
from competition.rundir import file_digest, staged_unit
from stages.training import training_config
from tests.test_p2l import prompt_of, simulated_battles, write_battles_csv, write_grades_csv

FAST = ["--set", "head.l2_embedding=[0.5]", "--set", "head.l2_features=[0.05]", "--set", "tune.num_threads=1"]


def sets(root: Path) -> list[str]:
    return ["--set", f"encoder.cache_dir={str(root / 'cache')!r}", "--set", f"cv.fold_dir={str(root / 'folds')!r}", *FAST]


def write_inputs(root: Path) -> None:
    frame = simulated_battles(n_prompts=24, repeats=2, seed=3)
    write_battles_csv(root / "battles.csv", frame)
    write_grades_csv(root / "grades.csv", frame)
    (root / "costs.toml").write_text("weak = 0.5\nsteady = 1.0\npoet = 4.0\ncoder = 4.0\n", encoding="utf-8")
    new = [prompt_of(i)[0] for i in (300, 301, 302, 303)]
    pd.DataFrame({"id": ["n1", "n2", "n3", "n4"], "prompt": [json.dumps([t]) for t in new]}).to_csv(root / "new.csv", index=False)


def train(root: Path, out: str = "runs/p2l") -> int:
    argv = ["train-p2l", "--train", str(root / "battles.csv"), "--grades", str(root / "grades.csv"), "--folds", "3"]
    return main([*argv, "--out", str(root / out), *sets(root)])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("p2l_cli")
    write_inputs(root)
    assert train(root) == 0
    return root


def test_train_p2l_writes_a_run_the_blender_can_read(root):
    run = root / "runs" / "p2l"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "cv" and manifest["facts"]["family"] == "p2l"
    oof = pd.read_parquet(run / "oof.parquet")
    assert {"id", "fold", "label", "group"} <= set(oof.columns) and len(oof) == len(pd.read_csv(root / "battles.csv"))
    table = pd.read_parquet(run / "coefficients.parquet")
    assert len(table) == 24 * 4 and table.groupby("group")["fold"].nunique().max() == 1
    summary = json.loads((run / "p2l_summary.json").read_text())
    assert summary["p2l"]["log_loss"] < summary["names_only_bradley_terry"]["log_loss"]
    figures = summary["p2l"]["per_prompt_leaderboard"]
    assert (
        figures["mean_spearman_vs_grades"]
        > summary["names_only_bradley_terry"]["per_prompt_leaderboard"]["mean_spearman_vs_grades"]
    )
    assert sorted(p.name for p in (run / "folds").iterdir()) == ["fold0", "fold1", "fold2"]


def test_a_rerun_skips_the_finished_folds(root):
    run = root / "runs" / "p2l"
    before = {p: file_digest(p) for p in (run / "folds").rglob("*") if p.is_file()}
    oof = pd.read_parquet(run / "oof.parquet")
    assert train(root) == 0
    assert {p: file_digest(p) for p in (run / "folds").rglob("*") if p.is_file()} == before
    pd.testing.assert_frame_equal(pd.read_parquet(run / "oof.parquet"), oof)


def test_a_rerun_into_the_same_folder_with_other_data_or_settings_trains_its_folds_again(root, tmp_path):
    """A finished fold is reused only for the run it was made for: the same file rewritten with other prompt texts
    (same path, ids and outcomes) or another penalty retrains every fold, and the run equals a fresh one."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for name in ("battles.csv", "grades.csv"):
        shutil.copy(root / name, data / name)

    def train_on(out: Path, *extra: str) -> pd.DataFrame:
        argv = ["train-p2l", "--train", str(data / "battles.csv"), "--grades", str(data / "grades.csv"), "--folds", "3"]
        assert main([*argv, "--out", str(out), *sets(root), *extra]) == 0
        return pd.read_parquet(out / "coefficients.parquet")

    first = train_on(tmp_path / "reused")
    # the same ids and outcomes, but every code prompt now reads as a poem and back: only the text differs
    other = pd.read_csv(root / "battles.csv")
    texts = dict(zip(other["question_id"], other["prompt"], strict=False))
    order = sorted(texts)
    other["prompt"] = other["question_id"].map(dict(zip(order, [texts[q] for q in order[1:] + order[:1]], strict=True)))
    other.to_csv(data / "battles.csv", index=False)
    second = train_on(tmp_path / "reused")
    assert not np.allclose(first["coefficient"], second["coefficient"])
    pd.testing.assert_frame_equal(second, train_on(tmp_path / "fresh"))
    third = train_on(tmp_path / "reused", "--set", "head.l2_features=[5.0]")
    assert not np.allclose(third["coefficient"], second["coefficient"])
    pd.testing.assert_frame_equal(third, train_on(tmp_path / "fresh_l2", "--set", "head.l2_features=[5.0]"))


def test_the_run_joins_a_blend(root):
    from competition.settings import DataConfig
    from data.labelled import load_labelled
    from models.names_bradley_terry import NamesBradleyTerry

    frame = load_labelled(DataConfig(train=str(root / "battles.csv")), "battles")
    folds = pd.read_parquet(root / "runs" / "p2l" / "oof.parquet").set_index("id").loc[frame["id"], "fold"].to_numpy()
    result = cross_fit(lambda fold: NamesBradleyTerry(), frame, frame["label"].to_numpy(), folds, frame["group"].to_numpy())
    with staged_unit(root / "runs" / "names", "cv") as staging:
        write_cross_fit(staging, result)
    out = root / "runs" / "blend"
    assert main(["blend", "--runs", str(root / "runs" / "names"), str(root / "runs" / "p2l"), "--out", str(out)]) == 0
    report = pd.read_csv(out / "blend_report.csv")
    assert report["log_loss"].iloc[-1] <= report["log_loss"].iloc[0] + 1e-9


def test_a_fold_model_predicts_through_predict(root, tmp_path):
    test = simulated_battles(n_prompts=3, repeats=1, seed=9, start=400)
    write_battles_csv(tmp_path / "test.csv", test)
    model = root / "runs" / "p2l" / "folds" / "fold0" / "model"
    submission = tmp_path / "submission.csv"
    assert main(["predict", "--model", str(model), "--test", str(tmp_path / "test.csv"), "--submission", str(submission)]) == 0
    assert len(pd.read_csv(submission)) == len(test)


def test_prompt_leaderboard_ranks_a_new_prompt_and_a_file_of_prompts(root):
    run = str(root / "runs" / "p2l")
    code_prompt = prompt_of(500)[0]
    assert main(["prompt-leaderboard", "--p2l", run, "--prompt", code_prompt, "--out", str(root / "plb" / "one")]) == 0
    table = pd.read_csv(next((root / "plb" / "one").glob("prompt_*.csv")))
    assert table["model"].iloc[0] == "coder" and (table["lower"] <= table["score"]).all()
    assert (table["score"] <= table["upper"]).all() and next((root / "plb" / "one").glob("prompt_*.png")).stat().st_size > 0
    argv = ["prompt-leaderboard", "--p2l", run, "--prompts", str(root / "new.csv"), "--models", "coder", "poet", "weak"]
    assert main([*argv, "--out", str(root / "plb" / "all")]) == 0
    aggregate = pd.read_csv(root / "plb" / "all" / "aggregate.csv")
    assert set(aggregate["model"]) == {"coder", "poet", "weak"} and aggregate["model"].iloc[-1] == "weak"


def test_route_puts_the_p2l_router_beside_the_ridge_router(root):
    argv = [
        "route",
        "--train",
        str(root / "battles.csv"),
        "--grades",
        str(root / "grades.csv"),
        "--costs",
        str(root / "costs.toml"),
    ]
    argv += ["--p2l", str(root / "runs" / "p2l"), "--test", str(root / "new.csv"), "--folds", "3", "--budget", "2.5"]
    assert main([*argv, "--out", str(root / "route"), "--set", f"cv.fold_dir={str(root / 'folds')!r}"]) == 0
    summary = json.loads((root / "route" / "summary.json").read_text())
    p2l = summary["p2l_router_at_budget"]
    assert p2l["mean_cost"] <= 2.5 + 1e-9 and summary["p2l_router_share_of_oracle_gain_at_budget"] > 0.5
    assert {"p2l_router", "p2l_lp_router", "oracle_per_query"} <= set(pd.read_csv(root / "route" / "curve.csv")["policy"])
    routed = pd.read_csv(root / "route" / "routed.csv")
    assert set(routed["p2l_model"]) <= {"coder", "poet", "steady", "weak"}
    assert set(routed["p2l_lp_model"]) <= {"coder", "poet", "steady", "weak"} and routed["p2l_lp_probability"].gt(0).all()
    # P2L's own router: each prompt's expected cost within the limit, no better than the per-query oracle
    lp = summary["p2l_lp_router_at_budget"]
    decisions = pd.read_csv(root / "route" / "decisions.csv")
    assert lp["mean_cost"] <= 2.5 + 1e-9 and decisions["p2l_lp_router_probability"].between(0, 1).all()
    assert 0.5 < summary["p2l_lp_router_share_of_per_query_oracle_gain_at_budget"] <= 1 + 1e-9


def route_argv(root: Path, out: str, *extra: str) -> list[str]:
    argv = ["route", "--train", str(root / "battles.csv"), "--grades", str(root / "grades.csv")]
    argv += ["--costs", str(root / "costs.toml"), "--p2l", str(root / "runs" / "p2l"), "--folds", "3", "--budget", "2.5"]
    return [*argv, "--out", str(root / out), "--set", f"cv.fold_dir={str(root / 'folds')!r}", *extra]


def test_the_lp_routers_opponent_distribution_changes_its_policy(root, capsys):
    assert main(route_argv(root, "route_uniform")) == 0
    assert main(route_argv(root, "route_vs_weak", "--set", "router.opponent={weak = 1.0}")) == 0
    uniform = pd.read_csv(root / "route_uniform" / "decisions.csv")["p2l_lp_router_probability"]
    vs_weak = pd.read_csv(root / "route_vs_weak" / "decisions.csv")["p2l_lp_router_probability"]
    assert not np.allclose(uniform, vs_weak)
    capsys.readouterr()
    assert main(route_argv(root, "route_bad", "--set", "router.opponent={nobody = 1.0}")) == 2
    assert "router.opponent: model 'nobody' is not a candidate" in capsys.readouterr().err
    assert not (root / "route_bad").exists()


def test_a_categorys_aggregate_leaderboard_tracks_its_own_bradley_terry_better_than_the_global_one(root):
    """Code prompts favour the coder, poems the poet: the global leaderboard ranks them alike; P2L's aggregate of
    each category's held-out prompts should rank them as the category's own battles do."""
    from analysis.p2l import held_out_category_boards
    from competition.folds import prompt_groups
    from data.loader import load_arena_csv

    frame = load_arena_csv(root / "battles.csv", require_labels=True)
    frame["group"] = prompt_groups(frame).astype(str).to_numpy()
    category_of_group = {
        g: ("code" if "Python" in t[0] else "poem") for g, t in zip(frame["group"], frame["prompt"], strict=True)
    }
    boards = held_out_category_boards(root / "runs" / "p2l", frame, category_of_group).set_index("category")
    assert list(boards.index) == ["code", "poem"] and (boards["prompts"] == 12).all()
    assert (boards["p2l_aggregate_spearman"] > boards["global_leaderboard_spearman"]).all()
    assert (boards["p2l_aggregate_log_loss"] < boards["global_leaderboard_log_loss"]).all()
    assert (boards["category_in_sample_log_loss"] <= boards["p2l_aggregate_log_loss"] + 1e-9).all()


def test_every_train_p2l_flag_sets_its_config_field():
    # tests/test_architecture.py maps each command module to its config class; this is its check for train-p2l
    parser, module = command_parser("train-p2l")
    flags = module.FLAGS["train-p2l"]
    for flag in (f for f in flags if f.field is not None):
        value, argv = (16, ["16"]) if flag.type is int else ("some/where.csv", ["some/where.csv"])
        cfg = config_from_args(training_config("p2l"), parser.parse_args([flag.name, *argv]), flags)
        for part in flag.field.split("."):
            cfg = getattr(cfg, part)
        assert cfg == value, flag.name
    listed = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")} - {"--help"}
    assert listed == {flag.name for flag in flags}


def test_coefficients_and_summary_agree_with_a_direct_fit(root):
    """The held-out coefficient table is what each fold model says about its own held-out prompts."""
    from analysis.p2l import load_p2l_run

    run = root / "runs" / "p2l"
    fitted = load_p2l_run(run)
    table = pd.read_parquet(run / "coefficients.parquet")
    group = table[table["fold"] == 1]["group"].iloc[0]
    text = prompt_of(int(group[1:]))[0]
    theta, _ = fitted.estimators[1].coefficients([[text]])
    stored = table[table["group"] == group].set_index("model")["coefficient"]
    assert np.allclose(stored.loc[fitted.estimators[1].models_].to_numpy(), theta[0])
