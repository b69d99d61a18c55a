"""Flower's ``flwr.server``: ``start_server``, ``ServerConfig``, ``History``, its strategies.

Maps: ``start_server`` -> ``pollinate.start_server`` (returns ``History``, made from the
run's ``Result`` by ``history_from_result``); ``ServerConfig`` / ``ServerAppComponents``
(``.server_config``); ``ClientProxy`` / ``ClientManager`` over pollinate's Grid. Flower 1.x
``ServerApp(server_fn=...)`` and ``Grid`` are the message API side's, loaded when first used.
``LegacyContext`` and ``workflow`` (``DefaultWorkflow``, ``SecAggPlusWorkflow``) run a
classic strategy from ``@app.main()``, with SecAgg+ if asked.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._missing import unsupported
from . import strategy as strategy
from . import workflow as workflow
from ._legacy_context import LegacyContext as LegacyContext
from .app import start_server as start_server
from .client_manager import ClientManager as ClientManager
from .client_proxy import ClientProxy as ClientProxy
from .history import History as History
from .history import history_from_result as history_from_result
from .server_config import ServerAppComponents as ServerAppComponents
from .server_config import ServerConfig as ServerConfig

__all__ = [
    "ClientManager",
    "ClientProxy",
    "Grid",
    "History",
    "LegacyContext",
    "ServerApp",
    "ServerAppComponents",
    "ServerConfig",
    "history_from_result",
    "start_server",
    "strategy",
    "workflow",
]

_MESSAGE_API = frozenset({"Grid", "ServerApp"})


def __getattr__(name: str) -> Any:
    """``ServerApp`` and ``Grid`` from the message API side (``..serverapp``), when first used."""
    if name in _MESSAGE_API:
        return getattr(importlib.import_module("pollinate.compat.flwr.serverapp"), name)
    raise unsupported(
        "pollinate.compat.flwr.server",
        name,
        "a classic server name; pollinate.start_server and pollinate.ServerApp are the native ones",
    )
