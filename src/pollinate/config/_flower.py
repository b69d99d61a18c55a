"""Flower's ``[tool.flwr.*]`` tables, read as pollinate's ``[tool.pollinate.*]``.

An app made with ``flwr new`` names its components under ``[tool.flwr.app.components]``, its
run config under ``[tool.flwr.app.config]`` and its federations under
``[tool.flwr.federations]`` (``options.num-supernodes = 10``); Flower 1.26+ apps may have no
federations at all (they live in ``~/.flwr/config.toml``), and then run on Flower's default
local simulation of 10 nodes. ``translate`` rewrites those tables into pollinate's spelling,
with notes that say what it read and what the pollinate spelling is; options pollinate has
no use for (Ray's client resources and init args) are accepted and named in a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._overrides import flatten, format_value

__all__ = [
    "FLOWER_DEFAULT_NODES",
    "Translation",
    "flower_federation_key",
    "has_flower_tables",
    "translate",
]

FLOWER_DEFAULT_NODES = 10
"""The supernodes of Flower's default local simulation (``num-supernodes``)."""

_DEFAULT_FEDERATION = "local-simulation"

_DEPLOYMENT_KEYS = {"address": "address", "insecure": "insecure", "root-certificates": "root-cert"}
"""A Flower SuperLink federation's keys and pollinate's names for them."""


@dataclass(frozen=True, slots=True)
class Translation:
    """The ``[tool.pollinate]`` tables a Flower pyproject stands for, and notes about it."""

    tables: dict[str, Any]
    notes: tuple[str, ...]


def has_flower_tables(document: Mapping[str, Any]) -> bool:
    """Whether the pyproject has a ``[tool.flwr]`` table."""
    tool = document.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("flwr"), dict)


def translate(document: Mapping[str, Any], path: Path) -> Translation:
    """``[tool.flwr.*]`` as ``[tool.pollinate.*]``; a malformed table is a ConfigError."""
    flwr = document["tool"]["flwr"]
    app = _table(flwr, "app", "tool.flwr.app", path)
    federations = _table(flwr, "federations", "tool.flwr.federations", path)
    ignored: list[str] = []
    notes: list[str] = []
    tables: dict[str, Any] = {}
    if "components" in app:
        tables["app"] = {"components": app["components"], "config": app.get("config", {})}
    if federations:
        translated = {"default": federations.get("default", _DEFAULT_FEDERATION)}
        for name, table in federations.items():
            if name != "default":
                translated[name] = _federation(name, table, path, ignored)
    else:
        translated = {
            "default": _DEFAULT_FEDERATION,
            _DEFAULT_FEDERATION: {"num-nodes": FLOWER_DEFAULT_NODES},
        }
        notes.append(
            f"{path} defines no federations (Flower keeps them in ~/.flwr/config.toml): "
            f"running on {_DEFAULT_FEDERATION!r} with {FLOWER_DEFAULT_NODES} nodes, Flower's "
            "default; --federation-config num-nodes=N changes it"
        )
    tables["federations"] = translated
    notes.insert(0, _spelling_note(path, translated))
    if ignored:
        notes.append(
            "pollinate has no use for these Flower options, which it ignores: "
            + ", ".join(sorted(set(ignored)))
        )
    return Translation(tables, tuple(notes))


def flower_federation_key(key: str, value: str) -> ConfigError | None:
    """The error for Flower's ``--federation-config`` spelling of the size, if ``key`` is it.

    ``flwr run . --federation-config "options.num-supernodes=5"`` is a Flower user's reflex;
    pollinate's key is ``num-nodes``, and the error says so with the value given.
    """
    if key not in ("num-supernodes", "options.num-supernodes"):
        return None
    return ConfigError(
        f"--federation-config: {key!r} is Flower's name for the number of nodes; pollinate's "
        f"is num-nodes: --federation-config num-nodes={value}"
    )


def _table(parent: Mapping[str, Any], key: str, where: str, path: Path) -> dict[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{where}] must be a table, got {format_value(value)}")
    return value


def _federation(name: str, table: object, path: Path, ignored: list[str]) -> dict[str, Any]:
    """One Flower federation as pollinate's: a simulation, or a deployment with an address."""
    where = f"[tool.flwr.federations.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table, got {format_value(table)}")
    out: dict[str, Any] = {}
    for key, value in flatten(table):
        if key == "options.num-supernodes":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(
                    f"{where} options.num-supernodes in {path} must be an integer, "
                    f"got {format_value(value)}"
                )
            out["num-nodes"] = value
        elif key in _DEPLOYMENT_KEYS:
            out[_DEPLOYMENT_KEYS[key]] = value
        else:
            ignored.append(f"{where} {key if len(key) <= 60 else key[:57] + '...'}")
    if "address" in out and "num-nodes" in out:  # a SuperLink's own simulation size
        del out["num-nodes"]
        ignored.append(f"{where} options.num-supernodes")
    elif "address" not in out and "num-nodes" not in out:
        out["num-nodes"] = FLOWER_DEFAULT_NODES
    return out


def _spelling_note(path: Path, federations: Mapping[str, Any]) -> str:
    default = federations["default"]
    chosen = federations.get(default)
    nodes = chosen.get("num-nodes") if isinstance(chosen, dict) else None
    federation = (
        f"[tool.pollinate.federations.{default}] num-nodes = {nodes}"
        if nodes is not None
        else "[tool.pollinate.federations.NAME]"
    )
    return (
        f"{path.name} is written for Flower ([tool.flwr.*]); pollinate reads it as is. In "
        "pollinate's spelling: [tool.pollinate.app.components], [tool.pollinate.app.config] "
        f"and {federation} (Flower's options.num-supernodes)"
    )
