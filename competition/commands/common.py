"""Turning the shared flags into config overrides, the same way for every command."""

from __future__ import annotations

import argparse
from typing import TypeVar

from competition.config import load_config

C = TypeVar("C")


def overrides_from_args(args: argparse.Namespace, flag_fields: dict[str, str]) -> list[str]:
    """`--set` values last, so they win over the convenience flags."""
    out = []
    for flag, field in flag_fields.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{field}={value!r}" if isinstance(value, str) else f"{field}={value}")
    return out + list(args.set or [])


def config_from_args(cls: type[C], args: argparse.Namespace, flag_fields: dict[str, str]) -> C:
    return load_config(cls, args.config, overrides_from_args(args, flag_fields))
