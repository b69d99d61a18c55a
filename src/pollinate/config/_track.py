"""An app's ``[tool.pollinate.app.track]`` table, and the trackers a run turns on.

::

    [tool.pollinate.app.track]
    tensorboard = true                      # on for every run of the app
    mlflow = { experiment = "mnist", tracking-uri = "http://mlflow.lab:5000" }
    wandb = { project = "mnist", mode = "offline", enabled = false }   # only with --track

A tracker named with ``true`` or a table of options is on for every run, unless its table
says ``enabled = false``; ``pollinate run --track NAME`` turns one on for a run, with the
table's options.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..tracking import TRACKER_OPTIONS, require_library
from ._overrides import format_value, type_phrase, unknown_key

__all__ = ["TRACK_TABLE", "resolve_trackers", "track_table"]

TRACK_TABLE = "tool.pollinate.app.track"
ENABLED = "enabled"


def track_table(table: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """The table checked: each tracker's options, ``enabled`` included (True unless said)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in table.items():
        if name not in TRACKER_OPTIONS:
            raise unknown_key(f"[{TRACK_TABLE}] in {where}", name, TRACKER_OPTIONS, _FIX)
        if isinstance(value, bool):
            out[name] = {ENABLED: value}
        elif isinstance(value, dict):
            out[name] = {ENABLED: True, **_options(name, value, where)}
        else:
            raise ConfigError(
                f"[{TRACK_TABLE}] {name} in {where} must be true, false or a table of its "
                f"options, got {format_value(value)}"
            )
    return out


_FIX = "Trackers are tensorboard, mlflow and wandb."


def _options(name: str, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    keys: dict[str, type] = {**TRACKER_OPTIONS[name], ENABLED: bool}
    place = f"[{TRACK_TABLE}.{name}] in {where}"
    for key, value in table.items():
        if key not in keys:
            raise unknown_key(place, key, keys, "Remove or rename it.")
        if isinstance(value, bool) != (keys[key] is bool) or not isinstance(value, keys[key]):
            raise ConfigError(
                f"{place}: {key} must be {type_phrase(keys[key])}, got {format_value(value)}"
            )
        if name == "wandb" and key == "mode" and value not in ("online", "offline"):
            raise ConfigError(f'{place}: mode must be "online" or "offline", got {value!r}')
    return dict(table)


def resolve_trackers(
    track: Mapping[str, Mapping[str, Any]], names: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """The trackers a run turns on, each with its options (a ConfigError if one is missing).

    They are the table's enabled ones and ``names`` (``--track``, a name or a comma list).
    """
    wanted = {name for name, options in track.items() if options.get(ENABLED, True)}
    for item in names:
        for name in filter(None, (part.strip() for part in item.split(","))):
            if name not in TRACKER_OPTIONS:
                known = ", ".join(TRACKER_OPTIONS)
                raise ConfigError(f"--track {name!r}: unknown tracker; choose from {known}")
            wanted.add(name)
    for name in wanted:
        require_library(name)
    return {
        name: {k: v for k, v in track.get(name, {}).items() if k != ENABLED}
        for name in TRACKER_OPTIONS
        if name in wanted
    }
