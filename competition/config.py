"""Typed, frozen configs read from TOML, overridden from the command line, saved beside outputs.

Each stage defines its own frozen dataclass (sections are nested dataclasses). Unknown keys are an
error, values are checked against the field types, and `--set section.key=value` overrides any field.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from competition.atomic import write_text_atomic
from competition.errors import InputError

C = TypeVar("C")
MAX_SEED = 2**32 - 1  # numpy and scikit-learn take seeds in 0..2**32-1; every field named seed or *_seed is checked


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise TypeError(errors[0] if errors else f"{where}: cannot be None")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a table, got {value!r}")
        return _from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a table, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise TypeError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"{where}: unsupported config type {hint}")


def _from_dict(cls: type[C], data: dict[str, Any], where: str = "") -> C:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    if unknown:
        raise TypeError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    for key in (k for k in kwargs if k == "seed" or k.endswith("_seed")):
        if isinstance(kwargs[key], int) and not 0 <= kwargs[key] <= MAX_SEED:
            raise TypeError(f"{prefix}{key} must be between 0 and {MAX_SEED} (a random seed), got {kwargs[key]}")
    try:
        return cls(**kwargs)
    except ValueError as err:  # a range check in the dataclass's __post_init__
        raise TypeError(f"{prefix}{err}") from None


def require(condition: bool, field: str, rule: str) -> None:
    """A range check for a config's `__post_init__`: `require(x > 0, "learning_rate", "must be > 0")`."""
    if not condition:
        raise ValueError(f"{field} {rule}")


def finite(value: float) -> bool:
    return math.isfinite(value)


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    """`update` over `base`, tables merged key by key. A table never silently replaces a value (`lgbm = 5` in a file
    and `--set lgbm.x=1`): the value is kept, and the config's type check then names it."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        elif isinstance(value, dict) and key in out:
            raise TypeError(f"{where}{key} is set to {out[key]!r}, and a table of settings cannot be merged into it")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=1` → {"a": {"b": 1}}; the value is read as TOML when it parses, else kept as a string."""
    if "=" not in text:
        raise InputError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def _defaults(cls: type) -> dict[str, Any]:
    """The default values of a config class as data, without constructing (and so validating) it:
    a config may have no valid default for a field the user must set."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return {k: v for k, v in out.items() if v is not None}


def read_toml(path: str | Path, what: str = "TOML file") -> dict[str, Any]:
    """A TOML file as data; a missing, unreadable or invalid one is one line naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path)
    if not path.is_file():
        raise InputError(f"{what} is not a file", path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML ({err})", path) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path) from None
    except OSError as err:
        raise InputError(f"cannot read the {what} ({err.strerror or type(err).__name__})", path) from None


def load_config(cls: type[C], path: str | Path | None = None, overrides: list | tuple = ()) -> C:
    """Defaults of `cls`, then the TOML file (which lists only what it changes), then the overrides.

    An override is a nested dict ({"lgbm": {"num_leaves": 7}}) or `--set` text ("lgbm.num_leaves=7").
    """
    data = _defaults(cls)
    try:
        if path is not None:
            data = _merge(data, read_toml(path, "config file"))
        for override in overrides:
            data = _merge(data, override if isinstance(override, dict) else parse_override(override))
        return _from_dict(cls, data)
    except TypeError as err:
        raise InputError(f"bad config: {err}", path) from None


def peek_setting(key: str, path: str | Path | None, overrides: list | tuple, default: Any) -> Any:
    """One top-level setting from a config file and its overrides (which win), read before the config class is known
    (the training stages pick their class by the model family the config names)."""
    value = default
    if path is not None and Path(path).is_file():
        try:
            value = tomllib.loads(Path(path).read_text(encoding="utf-8")).get(key, value)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            pass  # reported with the file's name when the config itself is read
    for override in overrides:
        data = override if isinstance(override, dict) else parse_override(override)
        value = data.get(key, value)
    return value


def config_from_data(cls: type[C], data: Any, source: str | Path | None = None) -> C:
    """A config from data already parsed (settings saved as JSON beside a model), with the checks a TOML file gets:
    unknown keys, wrong types and out-of-range values are an InputError naming `source`."""
    if not isinstance(data, dict):
        raise InputError(f"bad settings: expected a table, got {type(data).__name__}", source)
    try:
        return _from_dict(cls, data)
    except TypeError as err:
        raise InputError(f"bad settings: {err}", source) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain TOML-writable data (None fields are left out: TOML has no null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    return write_text_atomic(path, tomli_w.dumps(to_dict(cfg)))
