"""Flower's ``LegacyContext``: the run's Context plus the classic strategy, config and history.

``DefaultWorkflow(...)(grid, context)`` runs ``context.strategy`` for
``context.config.num_rounds`` on pollinate's round loop and fills ``context.history``, as
Flower's legacy workflow does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....errors import ConfigError
from ....strategy import Strategy as CoreStrategy
from .._records import Context
from .history import History
from .server_config import ServerConfig, server_config

__all__ = ["LegacyContext"]


class LegacyContext(Context):
    """``LegacyContext(context, config=None, strategy=None, client_manager=None)``.

    The ``context`` ``main(grid, context)`` received, with ``config`` (a ``ServerConfig``,
    default one round), ``strategy`` (a ``flwr.server.strategy`` one, default ``FedAvg()``)
    and ``history`` (a ``History``, filled by the workflow). A custom ``client_manager`` is
    not supported: pollinate tracks the connected nodes.
    """

    __slots__ = ("client_manager", "config", "history", "strategy")

    config: ServerConfig
    strategy: CoreStrategy
    client_manager: None
    history: History

    def __init__(
        self,
        context: Context,
        config: ServerConfig | Mapping[str, Any] | None = None,
        strategy: CoreStrategy | None = None,
        client_manager: object | None = None,
    ) -> None:
        if client_manager is not None:
            raise ConfigError(
                "LegacyContext(client_manager=...) is not supported: pollinate tracks the "
                "connected nodes; override configure_fit to choose clients"
            )
        super().__init__(
            context.run_id, context.node_id, context.node_config, context.state, context.run_config
        )
        for name, value in (
            ("config", server_config(config)),
            ("strategy", _strategy(strategy)),
            ("client_manager", None),
            ("history", History()),
        ):
            object.__setattr__(self, name, value)  # the Context is frozen; these are set once


def _strategy(strategy: object) -> CoreStrategy:
    """The strategy given (Flower's classic kind), or Flower's default ``FedAvg()``."""
    if strategy is None:
        from .strategy import FedAvg

        return FedAvg()
    if not isinstance(strategy, CoreStrategy):
        raise ConfigError(
            f"LegacyContext's strategy must be one of pollinate.compat.flwr.server.strategy "
            f"(FedAvg, FedProx, ...), got {type(strategy).__name__}: a flwr.serverapp.strategy "
            "one runs with strategy.start(grid=grid, ...) instead, without a workflow"
        )
    return strategy
