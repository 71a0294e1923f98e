"""Model folders checked before any library reads them, and the identity of a base model.

Checks (each an InputError naming the file, so a damaged folder is one line and exit 2, never a crash inside
transformers or safetensors):
- `config.json` is a readable JSON object whose `model_type` this transformers release knows;
- weights are safetensors: `model.safetensors`, or `model.safetensors.index.json` and every shard it names. Each
  header must parse and the file must be as long as the header says (a truncated copy is caught here). Pickle
  formats (`pytorch_model.bin`, `*.pt`) are refused: unpickling runs code, and nothing here needs them.

Identity: a fold model holds adapters (or a full fine-tune's weights) that only mean something on top of the base
they were trained on. It records that base by what it is, not where it was: a digest of the architecture in
config.json, one of the tokenizer's behaviour (vocabulary, special tokens, the ids of a fixed probe text), and one
of the weight files (sizes, headers and sampled blocks: reading 18 GB at every load is out of the question, and
an instruction-tuned variant shares config and tokenizer with its base, so the weights must enter). The folder
may then move anywhere (a Kaggle dataset): `locate_base` finds it among the folders given and checks it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from competition.errors import InputError

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# keys that differ between copies of one base (library version, dtype on disk, the head a loader adds)
VOLATILE_CONFIG_KEYS = frozenset(
    {
        "_name_or_path",
        "transformers_version",
        "architectures",
        "torch_dtype",
        "dtype",
        "id2label",
        "label2id",
        "num_labels",
        "problem_type",
        "use_cache",
        "pad_token_id",
        "_attn_implementation",
        "attn_implementation",
    }
)
PROBE_TEXT = "Prompt:\n¿Qué es 2+2? 二加二 = 4.\n\nResponse A:\n```python\nprint(2 + 2)\n```"
SAMPLED_BLOCKS, BLOCK_BYTES = 4, 1 << 16


def read_json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not readable JSON ({type(err).__name__})", path) from None
    if not isinstance(value, dict):
        raise InputError("expected a JSON object", path)
    return value


def check_config(model_dir: Path, head: str | None = None) -> dict:
    """config.json of `model_dir`, with an architecture transformers knows (and a `head` class for it, when asked:
    "sequence-classification" for the classifiers here)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    path = model_dir / CONFIG_FILE
    config = read_json_object(path)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        raise InputError(f"unknown architecture (model_type {model_type!r}) for this transformers release", path)
    if head == "sequence-classification" and model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise InputError(f"architecture {model_type!r} has no sequence-classification head in transformers", path)
    return config


def safetensors_header(path: Path) -> dict:
    """The header of a safetensors file, after checking the file holds every byte it announces."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise InputError("not a safetensors file (a pickle or another format, or cut short)", path)
            header = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError:
        raise InputError("weights file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a safetensors file ({type(err).__name__})", path) from None
    if not isinstance(header, dict):
        raise InputError("not a safetensors file (header is not an object)", path)
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        raise InputError("not a safetensors file (bad tensor entry in the header)", path) from None
    if 8 + length + end > size:
        raise InputError(f"weights file is truncated ({size} bytes, its header needs {8 + length + end})", path)
    return header


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files holding `model_dir`'s weights, each checked; InputError when there are none."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError("index names no weight files", index)
        names = sorted({str(v) for v in weight_map.values()})
        if any(Path(n).name != n for n in names):
            raise InputError("index names a weight file outside its folder", index)
        files = [model_dir / n for n in names]
    elif (model_dir / SAFETENSORS_FILE).is_file():
        files = [model_dir / SAFETENSORS_FILE]
    else:
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise InputError(f"weights only as a pickle ({pickles[0]}): convert them to safetensors", model_dir)
        raise InputError(f"no weights ({SAFETENSORS_FILE} or {INDEX_FILE})", model_dir)
    for file in files:
        safetensors_header(file)
    return files


def check_model_folder(model_dir: str | Path, head: str | None = None, weights: bool = True) -> dict:
    """InputError unless `model_dir` holds a usable config (and weights); returns the config."""
    path = Path(model_dir)
    if not str(model_dir):
        raise InputError("model_path is empty: point it at a local model directory (downloads are never made)")
    if not path.is_dir():
        raise InputError("model directory not found (models are loaded from local files only)", path)
    if not (path / CONFIG_FILE).exists():
        raise InputError("no config.json: not a Hugging Face model directory", path)
    config = check_config(path, head)
    if weights:
        weight_files(path)
    return config


def config_digest(config: dict) -> str:
    kept = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """What the tokenizer does: its vocabulary, special tokens and the ids of a fixed multilingual probe."""
    facts = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": sorted((str(k), str(v)) for k, v in tokenizer.special_tokens_map.items()),
        "probe": tokenizer(PROBE_TEXT)["input_ids"],
    }
    return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()


def weights_digest(model_dir: Path) -> str:
    """Names, sizes, headers and a few sampled blocks of every weight file ("" for a folder without weights)."""
    try:
        files = weight_files(model_dir)
    except InputError:
        return ""
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}|{size}".encode())
        with file.open("rb") as handle:
            length = struct.unpack("<Q", handle.read(8))[0]
            digest.update(handle.read(length))
            start = 8 + length
            spread = max(size - start - BLOCK_BYTES, 0)
            for k in range(SAMPLED_BLOCKS):
                handle.seek(start + spread * k // (SAMPLED_BLOCKS - 1))
                digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def base_identity(model_dir: str | Path, tokenizer) -> dict:
    """What a fold model records of its base: a name for people, digests for the check."""
    path = Path(model_dir)
    return {
        "name": path.resolve().name,
        "config_sha256": config_digest(read_json_object(path / CONFIG_FILE)),
        "tokenizer_sha256": tokenizer_digest(tokenizer),
        "weights_sha256": weights_digest(path),
    }


def identity_differences(expected: dict, model_dir: Path, load_tokenizer) -> list[str]:
    """What of `expected` `model_dir` does not match, in words (config first: it is the cheapest to read).
    `load_tokenizer(folder)` reads a tokenizer (models/backbone.py's, passed in: that module checks folders here)."""
    try:
        if config_digest(read_json_object(model_dir / CONFIG_FILE)) != expected.get("config_sha256"):
            return ["different config"]
        found = base_identity(model_dir, load_tokenizer(model_dir))
        if expected.get("weights_sha256"):  # a damaged weight file is named as such, not as "weights differ"
            weight_files(model_dir)
    except InputError as err:
        return [str(err)]
    return [f"different {part}" for part in ("tokenizer", "weights") if found[f"{part}_sha256"] != expected.get(f"{part}_sha256")]


def locate_base(
    expected: dict, candidates: list, recorded: list, owner: str | Path, load_tokenizer, flag: str = "--base-model"
) -> str:
    """The folder holding the base `expected` describes: among `candidates` (given by the user, in order), or when
    none are given among `recorded` (where it was at training, an installed model package). InputError naming `flag`
    when none matches: a folder given is never passed over for one recorded."""
    name = expected.get("name", "the base model")
    tried = []
    for candidate in list(candidates) or [r for r in recorded if r]:
        path = Path(candidate)
        if not path.is_dir():
            tried.append(f"{candidate} (not found)")
            continue
        differences = identity_differences(expected, path, load_tokenizer)
        if not differences:
            return str(candidate)
        tried.append(f"{candidate} ({', '.join(differences)})")
    folders = "; ".join(tried) or "no folder recorded"
    if candidates:
        raise InputError(f"needs its base model {name!r}; {flag} gave none that matches: {folders}", owner)
    raise InputError(f"needs its base model {name!r}, not where it was trained ({folders}): pass {flag} DIR", owner)
