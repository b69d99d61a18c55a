"""Flower's ``ServerConfig`` and ``ServerAppComponents``: how many rounds, and the run's parts.

``ServerConfig(num_rounds, round_timeout)`` becomes ``Strategy.start(num_rounds=...,
timeout_s=round_timeout)``; a plain ``{"num_rounds": 3}`` is taken as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ....errors import ConfigError

__all__ = ["ServerAppComponents", "ServerConfig", "server_config"]


@dataclass
class ServerConfig:
    """How many rounds to run, and how long a round may wait for its clients (None: no limit)."""

    num_rounds: int = 1
    round_timeout: float | None = None

    def __repr__(self) -> str:
        return f"num_rounds: {self.num_rounds}, round_timeout: {self.round_timeout}"


@dataclass
class ServerAppComponents:
    """What a Flower 1.x ``server_fn(context)`` returns for ``ServerApp(server_fn=...)``."""

    server: Any = None
    config: ServerConfig | None = None
    strategy: Any = None
    client_manager: Any = None


def server_config(config: ServerConfig | Mapping[str, Any] | None) -> ServerConfig:
    """A ``ServerConfig`` from one, from a dict of its fields, or the default (one round)."""
    if config is None:
        return ServerConfig()
    if isinstance(config, ServerConfig):
        checked = config
    elif isinstance(config, Mapping):
        unknown = set(config) - {"num_rounds", "round_timeout"}
        if unknown:
            raise ConfigError(
                f"config has unknown keys {sorted(unknown)}: ServerConfig takes num_rounds and "
                "round_timeout"
            )
        checked = ServerConfig(**config)
    else:
        raise ConfigError(
            f"config must be a ServerConfig(num_rounds=...) or a dict, got {type(config).__name__}"
        )
    if isinstance(checked.num_rounds, bool) or not isinstance(checked.num_rounds, int):
        raise ConfigError(f"num_rounds must be an int, got {checked.num_rounds!r}")
    if checked.num_rounds < 1:
        raise ConfigError(f"num_rounds must be at least 1, got {checked.num_rounds}")
    return checked
