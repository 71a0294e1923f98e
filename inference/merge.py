"""A `train-transformer` fold model merged into a plain Hugging Face sequence classifier (for vLLM).

A fold model (estimator.json + trainable.safetensors) holds only what was trained: LoRA adapters and the
head, or every weight of a full fine-tune; its base stays at the path its settings name. vLLM needs one
directory with all weights merged and unquantised. `merge_fold_model` rebuilds the classifier the way the
transformers backend does (`inference.sources.load_saved_classifier`: the estimator's own settings, read by
`saved_settings`, with `quantize_4bit` off, the trained weights loaded by `load_trainable_state`, LoRA merged
by `merge_and_unload`), casts it to one dtype and saves model and tokenizer with `save_pretrained`, staged in
a temporary sibling folder and renamed into place (`competition.rundir.staged_unit`).

A fold model trained in 4 bits is merged into its unquantised base in the compute dtype: NF4 weights are
never dequantised and saved, so the merged model is the full-precision base plus the trained adapters.

    python -m inference.merge runs/transformer/gemma/folds/fold0/model /tmp/gemma-fold0-merged --dtype bfloat16
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from competition.errors import InputError
from competition.rundir import check_outputs, file_digest, staged_unit
from inference.sources import MERGED_KIND, load_saved_classifier, merged_facts

log = logging.getLogger(__name__)

MERGED_SUFFIX = "-merged"


def merged_dir_for(fold_model_dir: str | Path) -> Path:
    """Where `open_vllm` keeps the merged copy of a fold model: the sibling `<model dir>-merged`.

    Beside the fold model, never in it or over it, named after it so that two models in one folder never
    share a copy; reused by every later run (a 9B merge takes minutes and about 18 GB). Not under the
    inference run directory: the backend does not know that directory, and a merge there would be redone
    by every run. A folder of that name is only ever replaced when it is an earlier merge (its manifest says
    so); anything else there is an error, never overwritten.
    """
    path = Path(fold_model_dir).resolve()
    return path.parent / f"{path.name}{MERGED_SUFFIX}"


def merge_facts(fold_model_dir: str | Path, dtype: str, base_models=()) -> dict:
    """What decides the merged weights: the trained weights, the settings (and so the base), the dtype; and
    whether the fold model trained on a 4-bit base (its merge is then another function: see inference/sources.py)."""
    from models.transformer.estimator import SETTINGS_FILE, WEIGHTS_FILE, fold_model_settings

    fold_model_dir = Path(fold_model_dir)
    model_cfg, _ = fold_model_settings(fold_model_dir, base_models)
    return {
        "source": str(fold_model_dir.resolve()),
        "base": str(Path(model_cfg.model_path).resolve()),
        "weights_sha256": file_digest(fold_model_dir / WEIGHTS_FILE),
        "settings_sha256": file_digest(fold_model_dir / SETTINGS_FILE),
        "dtype": dtype,
        "trained_4bit": model_cfg.quantize_4bit,
        "attention": model_cfg.attn_implementation,
    }


def merge_fold_model(
    fold_model_dir: str | Path, target_dir: str | Path, dtype: str = "auto", device: str = "cpu", base_models=()
) -> Path:
    """Writes `fold_model_dir` merged into a plain sequence classifier at `target_dir`; returns `target_dir`.

    `dtype`: that of the saved weights; "auto" takes the fold model's own `model.dtype`, whose "auto" is
    float32 on CPU. The merge runs on `device`. `target_dir` must not be, hold or lie inside the fold model
    or its base, and may replace only an earlier merge or an empty folder.
    """
    from models.backbone import compute_dtype_name
    from models.transformer.estimator import saved_settings

    settings = saved_settings(fold_model_dir)
    if settings is None:
        raise InputError("not a saved train-transformer model (no estimator.json)", fold_model_dir)
    dtype = compute_dtype_name(settings[0].dtype if dtype == "auto" else dtype, device)
    facts = merge_facts(fold_model_dir, dtype, base_models)
    return _write_merged(Path(fold_model_dir), Path(target_dir), facts, device, base_models)


def _write_merged(fold_model_dir: Path, target_dir: Path, facts: dict, device: str, base_models=()) -> Path:
    from models.backbone import resolve_dtype

    check_outputs([target_dir], [fold_model_dir, facts["base"]])
    if target_dir.exists() and merged_facts(target_dir) is None and any(target_dir.iterdir()):
        raise InputError("exists and is not a merged model written by this project: move it away first", target_dir)
    dtype = facts["dtype"]
    # a merge is asked for by name; scoring it is what `accept_merged_4bit` guards (the facts record the 4-bit origin)
    tokenizer, model = load_saved_classifier(fold_model_dir, device, dtype, False, base_models, accept_merged_4bit=True)
    # trainable weights (head, a full fine-tune's layers) were float32 beside a bfloat16 base: one dtype, as vLLM loads it
    model = model.to(resolve_dtype(dtype))
    model.config.use_cache = False
    with staged_unit(target_dir, MERGED_KIND, facts) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    log.info("merged %s into %s (%s)", fold_model_dir, target_dir, dtype)
    return target_dir


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on `directory` (read-only folders too), so that two workers never merge the same
    model at once: the second waits and then finds the first one's merge."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def ensure_merged(fold_model_dir: str | Path, dtype: str, device: str = "cpu", base_models=()) -> Path:
    """The merged copy of a fold model in `dtype` (`merged_dir_for`), made now unless an earlier merge of the
    same weights, settings and dtype is there."""
    fold_model_dir = Path(fold_model_dir)
    target = merged_dir_for(fold_model_dir)
    with _locked(fold_model_dir):
        facts = merge_facts(fold_model_dir, dtype, base_models)
        if merged_facts(target) == facts:
            log.info("using the merged copy %s", target)
            return target
        log.info("merging %s into %s for vLLM", fold_model_dir, target)
        try:
            return _write_merged(fold_model_dir, target, facts, device, base_models)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise InputError(
                f"cannot write the merged model beside the fold model ({err.strerror}); merge it where you can write "
                f"(python -m inference.merge {fold_model_dir} OUT_DIR --dtype {dtype}) and pass OUT_DIR as --model-path",
                target,
            ) from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("fold_model", help="a fold model saved by train-transformer (estimator.json + trainable.safetensors)")
    parser.add_argument("out", help="the merged Hugging Face directory to write")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--device", default="cpu", help="where to merge (cpu, cuda:0, ...)")
    parser.add_argument("--base-model", action="append", default=[], help="folder of the fold model's base (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(merge_fold_model(args.fold_model, args.out, args.dtype, args.device, tuple(args.base_model)))
    except InputError as err:
        print(f"merge: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
