"""Flower's ``flwr.client``: ``NumPyClient``, ``Client``, ``start_client``, ``start_numpy_client``.

Maps: a Flower client runs through pollinate's classic client adapter (the handlers of
``pollinate.NumPyClient``; ``client_fn_handlers`` builds them from a ``client_fn``);
``start_client`` / ``start_numpy_client`` call ``pollinate.start_client``. ``ClientApp``
(Flower 1.x ``ClientApp(client_fn=...)``) is the message API side's, loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._missing import unsupported
from ._adapter import client_fn_handlers as client_fn_handlers
from .app import start_client as start_client
from .app import start_numpy_client as start_numpy_client
from .client import Client as Client
from .numpy_client import NumPyClient as NumPyClient

__all__ = [
    "Client",
    "ClientApp",
    "NumPyClient",
    "client_fn_handlers",
    "start_client",
    "start_numpy_client",
]


def __getattr__(name: str) -> Any:
    """``ClientApp`` from the message API side (``..clientapp``) and ``mod``, loaded when used."""
    if name == "ClientApp":
        return importlib.import_module("pollinate.compat.flwr.clientapp").ClientApp
    if name == "mod":
        return importlib.import_module(f"{__name__}.mod")
    raise unsupported(
        "pollinate.compat.flwr.client",
        name,
        "pollinate.NumPyClient, pollinate.ClientApp and pollinate.start_client are the native ones",
    )
