"""Nothing read back is trusted unchecked: for every kind of file a command reads back from a run folder, a changed,
torn or foreign copy is caught. A reader refuses it in one line; a resume builds it again where it is derived from the
inputs alone (a feature part, an inference shard, a finished fold, a cache entry). The refusals through the CLI are in
tests/test_hostile_inputs.py (`test_a_tampered_file_read_back_from_a_run_is_one_line`)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from competition.crossfit import FoldStore, cross_fit
from competition.errors import InputError
from competition.folds import assign_folds
from competition.rundir import (
    ABSENT,
    CHANGED,
    FOREIGN,
    SEALED,
    UNSEALED,
    check_sealed,
    read_manifest,
    seal_path,
    seal_state,
    write_manifest,
    write_sealed,
)
from data.labelled import load_unlabelled
from features.parts import build_parts, read_parts
from features.registry import build_features, computed
from tests.conftest import make_arena_frame
from tests.test_crossfit import SpyEstimator, synthetic

# ---------------------------------------------------------------------------------------------------- sealed files


def test_a_seal_tells_every_state_of_its_file(tmp_path):
    path = tmp_path / "piece.txt"
    assert seal_state(path) == ABSENT
    write_sealed(path, lambda tmp: tmp.write_text("abc"), "plan-1")
    assert seal_state(path, "plan-1") == SEALED and seal_state(path, None) == SEALED
    assert seal_state(path, "plan-2") == FOREIGN
    path.write_text("abd")
    assert seal_state(path, "plan-1") == CHANGED
    seal_path(path).write_text("{garbage")
    assert seal_state(path, "plan-1") == CHANGED
    seal_path(path).unlink()
    assert seal_state(path, "plan-1") == UNSEALED  # as a kill between the file and its seal leaves it
    with pytest.raises(InputError, match="piece.txt: has no seal"):
        check_sealed(path, "plan-1")


def test_a_rewrite_removes_the_old_seal_before_the_new_bytes_land(tmp_path):
    """Killed after the file and before its seal: the file must read as unsealed, never as sealed with the old seal."""
    path = tmp_path / "piece.txt"
    write_sealed(path, lambda tmp: tmp.write_text("old"))

    def killed(tmp):
        tmp.write_text("new")
        raise KeyboardInterrupt  # the write never finishes

    with pytest.raises(KeyboardInterrupt):
        write_sealed(path, killed)
    assert path.read_text() == "old" and seal_state(path) == UNSEALED


# --------------------------------------------------------------------------------------------------------- manifests


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["facts"].update(folds=[0, 1, 2, 3]),  # P2L reads its fold models from this list
        lambda m: m.update(kind="model"),
        lambda m: m["files"].pop("b.txt"),  # a file dropped from the list is no longer checked
        lambda m: m.pop("digest"),
    ],
    ids=["facts", "kind", "file_list", "digest_removed"],
)
def test_a_hand_edited_manifest_is_refused(tmp_path, edit):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    write_manifest(tmp_path, "cv", {"folds": [0, 1, 2], "family": "p2l"})
    assert read_manifest(tmp_path, "cv")["facts"]["folds"] == [0, 1, 2]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    with pytest.raises(InputError, match="manifest.json: the manifest does not match its own digest"):
        read_manifest(tmp_path)


# ---------------------------------------------------------------------------------------------------- feature parts


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "train.csv"
    make_arena_frame(n_prompts=12, rows_per_prompt=4, seed=6).to_csv(path, index=False)
    return load_unlabelled(path)


GROUPS = computed(("lengths", "consensus"))


def test_a_damaged_part_is_built_again_and_the_table_is_as_before(pairs, tmp_path):
    out = tmp_path / "parts"
    first = build_parts(pairs, GROUPS, pairs["group"].to_numpy(), out, 10)
    part = out / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:64])  # torn
    other = out / "part-00002.parquet"
    changed = pd.read_parquet(other).assign(**{"lengths__a_chars": 0.0})
    changed.to_parquet(other, index=False)  # rewritten by hand
    with pytest.raises(InputError, match="part-00001.parquet: does not match its seal"):
        read_parts(out, pairs, GROUPS)
    again = build_parts(pairs, GROUPS, pairs["group"].to_numpy(), out, 10)
    assert again["built"] == 2 and again["skipped"] == first["parts"] - 2
    pd.testing.assert_frame_equal(read_parts(out, pairs, GROUPS), build_features(pairs, GROUPS, None), check_exact=True)


def test_parts_of_another_file_are_refused_even_without_their_index(pairs, tmp_path):
    out = tmp_path / "parts"
    build_parts(pairs, GROUPS, pairs["group"].to_numpy(), out, 10)
    (out / "parts.json").unlink()
    other = pairs.assign(response_a=pairs["response_b"])
    with pytest.raises(InputError, match="holds parts of another file"):
        build_parts(other, GROUPS, other["group"].to_numpy(), out, 10)


# ------------------------------------------------------------------------------------------- shards and their plan


def test_a_tampered_shard_is_scored_again_and_a_tampered_plan_refused(tmp_path):
    from tests.test_inference_engine import make_cfg, make_frame

    model_dir, tokenizer = tiny_bert_and_tokenizer(tmp_path)
    from inference.engine import infer_frame, shard_path

    frame, cfg = make_frame(16), make_cfg(model_dir, shard_rows=4)
    shards = tmp_path / "run" / "shards"
    clean, stats = infer_frame(frame, tokenizer, cfg, shards, show_progress=False)
    shard = shard_path(shards, 1)
    table = pd.read_parquet(shard)
    table[["winner_model_a", "winner_model_b", "winner_tie"]] = [1.0, 0.0, 0.0]
    table.to_parquet(shard, index=False)
    probs, again = infer_frame(frame, tokenizer, cfg, shards, show_progress=False)
    assert again["shards_scored"] == 1 and again["shards_skipped"] == stats["shards"] - 1
    np.testing.assert_array_equal(probs, clean)
    plan = shards / "plan.json"
    plan.write_text(plan.read_text().replace('"shards"', '"shards_"'))
    with pytest.raises(InputError, match="plan.json: does not match its seal"):
        infer_frame(frame, tokenizer, cfg, shards, show_progress=False)
    plan.unlink()
    with pytest.raises(InputError, match="holds shards but no plan.json"):
        infer_frame(frame, tokenizer, cfg, shards, show_progress=False)


def tiny_bert_and_tokenizer(tmp_path):
    from models.backbone import load_tokenizer
    from tests.test_inference_engine import tiny_bert

    return tiny_bert(tmp_path / "bert"), load_tokenizer(tmp_path / "bert")


# ------------------------------------------------------------------------------------------------- finished folds


@pytest.mark.parametrize("damage", ["oof_rewritten", "facts_in_manifest_edited", "model_weights_torn"])
def test_a_damaged_fold_is_trained_again_and_the_result_is_as_before(tmp_path, damage, caplog):
    frame, y, groups = synthetic()
    folds = assign_folds(y, pd.Series(groups), 3, seed=0)
    store = FoldStore(tmp_path / "folds")
    first = cross_fit(SpyEstimator, frame, y, folds, groups, store=store)
    fold = tmp_path / "folds" / "fold1"
    if damage == "oof_rewritten":
        oof = pd.read_parquet(fold / "oof.parquet")
        oof.assign(winner_model_a=0.5, winner_model_b=0.25, winner_tie=0.25).to_parquet(fold / "oof.parquet", index=False)
    elif damage == "facts_in_manifest_edited":
        manifest = json.loads((fold / "manifest.json").read_text())
        manifest["facts"]["rows"] += 1
        (fold / "manifest.json").write_text(json.dumps(manifest))
    else:
        weights = next(p for p in (fold / "model").iterdir() if p.name != "manifest.json")
        weights.write_bytes(weights.read_bytes()[:5])
    SpyEstimator.fitted = []
    with caplog.at_level(logging.WARNING):
        again = cross_fit(SpyEstimator, frame, y, folds, groups, store=store)
    assert [f for f, _, _ in SpyEstimator.fitted] == [1]
    assert "fold 1 is damaged" in caplog.text
    np.testing.assert_allclose(again.oof, first.oof, rtol=0, atol=1e-15)  # read back from disk: normalised once more


# ---------------------------------------------------------------------------------------------------------- caches


def test_a_tampered_feature_cache_entry_is_computed_again(pairs, tmp_path, caplog):
    cold = build_features(pairs, ("lengths",), tmp_path)
    cached = next(tmp_path.glob("lengths-*.parquet"))
    pd.read_parquet(cached).assign(lengths__a_chars=0.0).to_parquet(cached, index=False)
    with caplog.at_level(logging.WARNING):
        warm = build_features(pairs, ("lengths",), tmp_path)
    pd.testing.assert_frame_equal(warm, cold)
    assert "does not match its seal" in caplog.text
    assert seal_state(cached, None) == SEALED  # written again, sealed
