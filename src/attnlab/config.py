"""Typed config sections built from Hydra's plain dicts."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from attnlab.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], section: str) -> T:
    """``cls(**values)``, naming unknown keys of config section ``section`` instead of a TypeError."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {section} option(s) {unknown}; known options are {sorted(known)}")
    return cls(**values)
