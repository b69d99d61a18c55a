"""Flower's ``ClientProxy``: the server's handle on one connected node.

A strategy gets them with each result and gives them back with each instruction
(``configure_fit``); the adapter addresses pollinate messages to ``node_id``. Calling a
node directly (``proxy.fit(...)``) is not supported: strategies send through the round.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ....errors import ConfigError

__all__ = ["ClientProxy"]


class ClientProxy:
    """One node: ``cid`` (its id as a string) and ``node_id`` (pollinate's node id).

    The adapter makes them with ``cid = str(node_id)``; one made by hand with a cid that is
    not a number gets node id 0 (it addresses no node).
    """

    def __init__(self, cid: str, node_id: int | None = None) -> None:
        self.cid = cid
        if node_id is None:
            node_id = int(cid) if cid.isdecimal() else 0
        self.node_id = node_id
        self.properties: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"ClientProxy(cid={self.cid!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientProxy) and other.node_id == self.node_id

    def __hash__(self) -> int:
        return hash(self.node_id)

    def get_properties(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: see ``fit``."""
        _direct("get_properties")

    def get_parameters(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: see ``fit``."""
        _direct("get_parameters")

    def fit(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: a strategy's ``configure_fit`` returns (proxy, FitIns) pairs instead."""
        _direct("fit")

    def evaluate(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: see ``fit``."""
        _direct("evaluate")

    def reconnect(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: see ``fit``."""
        _direct("reconnect")


def _direct(method: str) -> NoReturn:
    raise ConfigError(
        f"ClientProxy.{method} cannot be called directly on pollinate: return (proxy, FitIns) "
        "pairs from configure_fit / configure_evaluate, or send messages with "
        "pollinate's Grid.send_and_receive in a ServerApp"
    )
