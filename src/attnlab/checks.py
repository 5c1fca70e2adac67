"""Checking config values: every check fails with one :class:`ConfigError` line that names the key.

Typed config sections (``ModelConfig``, ``OptimConfig``, ``DataConfig``, ``GenerateConfig``) are
dataclasses built from Hydra's plain dicts with :func:`from_dict`, and check their values in
``__post_init__`` with the helpers below, so the same mistake reads the same everywhere.
"""

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


def is_int(value: Any) -> bool:
    """An integer, and not a boolean (YAML's ``true`` is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def require_int(value: Any, key: str, minimum: int = 1, allow_none: bool = False) -> None:
    """``key`` must be an integer >= ``minimum`` ("a positive integer" when it is 1), or null if allowed."""
    if value is None and allow_none:
        return
    if not is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key} must be {kind}{' or null' if allow_none else ''}, got {value!r}")


def require_bool(value: Any, key: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def require_choice(value: Any, key: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {key}={value!r}; use one of {', '.join(choices)}")
