"""``key=value`` settings: from the command line, typed like the values they replace.

``--run-config "lr=0.1 name='a b' data-dir=/tmp/x"`` is split like a shell line (quotes group
words), and each value is read as a TOML value (``0.1`` a float, ``true`` a bool, ``"a b"``
a string) or, when it is not one, kept as the text itself. The value is then checked against
the type the key has in ``pyproject.toml``, so a typo fails here, naming the key.
"""

from __future__ import annotations

import difflib
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..context import UserConfigValue
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the backport is a dependency on Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Override",
    "flatten",
    "format_value",
    "parse_overrides",
    "parse_toml",
    "type_phrase",
    "typed_value",
    "unknown_key",
]

_TYPE_NAMES: dict[type, str] = {
    bool: "a bool (true or false)",
    int: "an int",
    float: "a float",
    str: "a string",
}


@dataclass(frozen=True, slots=True)
class Override:
    """One ``key=value``: the value's text as given, and that text read as TOML."""

    key: str
    text: str
    value: UserConfigValue


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """A TOML document; ``source`` names it in the error when it is not valid TOML."""
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source} is not valid TOML: {err}") from None
    return document


def parse_overrides(texts: Iterable[str], option: str) -> list[Override]:
    """Every ``key=value`` in ``texts`` (each split like a shell line), in order."""
    overrides = []
    for text in texts:
        try:
            tokens = shlex.split(text)
        except ValueError as err:
            raise ConfigError(
                f"{option}: cannot split {text!r}: {err} (quote a value that holds spaces: "
                "name='a b')"
            ) from None
        for token in tokens:
            key, equals, value = token.partition("=")
            if not equals or not key.strip():
                raise ConfigError(
                    f"{option}: {token!r} is not key=value "
                    f'(e.g. {option} "num-server-rounds=5 learning-rate=0.05")'
                )
            overrides.append(Override(key.strip(), value, _read_value(value)))
    return overrides


def _read_value(text: str) -> UserConfigValue:
    """``text`` as a TOML bool, number or string; anything else stays the text itself."""
    try:
        document = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    value = document.get("value")
    if len(document) == 1 and isinstance(value, (bool, int, float, str)):
        return value
    return text


def typed_value(override: Override, expected: type, problem: str) -> UserConfigValue:
    """The override's value as an ``expected`` (bool, int, float or str), or a ConfigError.

    An int is accepted where a float is expected; a string key takes the text as given, so
    ``name=123`` is the string ``"123"``; numbers written Python's way (``.5``, ``1.``) and
    ``True``/``False`` are accepted too. ``problem`` starts the error message.
    """
    if expected is str:
        return override.text
    if expected is bool:
        if isinstance(override.value, bool):
            return override.value
        if override.text.lower() in ("true", "false"):
            return override.text.lower() == "true"
    else:
        number = _number(override, expected)
        if number is not None:
            return number
    raise ConfigError(f"{problem} must be {type_phrase(expected)}, got {override.text!r}")


def _number(override: Override, expected: type) -> int | float | None:
    value = override.value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if expected is float else value
    if isinstance(value, float):
        return value if expected is float else None
    try:
        return int(override.text) if expected is int else float(override.text)
    except ValueError:
        return None


def unknown_key(problem: str, key: str, known: Iterable[str], fix: str) -> ConfigError:
    """The error for a key nobody defined: the close match, every known key, and the fix."""
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(names) if names else "none"
    return ConfigError(f"{problem}: unknown key {key!r}{hint}; known keys: {listing}. {fix}")


def type_phrase(kind: type) -> str:
    """``"an int"``, ``"a float"``...: a config type as an error message names it."""
    return _TYPE_NAMES[kind]


def format_value(value: object) -> str:
    """A config value as TOML writes it: ``true``, ``0.1``, ``"text"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def flatten(table: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` for every value, nested tables included, in the file's order.

    Iterative, so a hostile file's deeply nested keys cannot exhaust Python's stack.
    """
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [("", table)]
    while stack:
        prefix, value = stack.pop()
        if isinstance(value, dict):
            inner = [
                (f"{prefix}{key}" if not prefix else f"{prefix}.{key}", v)
                for key, v in value.items()
            ]
            stack.extend(reversed(inner))
        else:
            out.append((prefix, value))
    return out
