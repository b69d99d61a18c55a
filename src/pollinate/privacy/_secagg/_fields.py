"""Typed reads of ``secagg.*`` values from a ConfigRecord, refusing malformed ones clearly."""

from __future__ import annotations

from typing import TypeVar

from ...errors import RecordError
from ...records import ConfigRecord
from ._errors import SecAggError

__all__ = ["byte_list", "int_list", "scalar"]

_S = TypeVar("_S", int, float, str, bytes, bool)


def scalar(config: ConfigRecord, key: str, kind: type[_S]) -> _S:
    """``config[key]`` as ``kind``; SecAggError if it is missing or of another type."""
    try:
        return config.value(key, kind)
    except (KeyError, RecordError) as err:
        raise SecAggError(f"secagg: a malformed protocol message: {err}") from None


def int_list(config: ConfigRecord, key: str) -> list[int]:
    """``config[key]`` as a list of ints (an empty list travels as any list type)."""
    return _list(config, key, int)


def byte_list(config: ConfigRecord, key: str) -> list[bytes]:
    """``config[key]`` as a list of bytes."""
    return _list(config, key, bytes)


def _list(config: ConfigRecord, key: str, kind: type[_S]) -> list[_S]:
    value = config.get(key)
    if not isinstance(value, list) or not all(
        isinstance(item, kind) and not (kind is int and isinstance(item, bool)) for item in value
    ):
        raise SecAggError(
            f"secagg: a malformed protocol message: {key!r} must be a list of "
            f"{kind.__name__}, got {type(value).__name__}"
        )
    return list(value)
