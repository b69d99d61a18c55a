"""Flower's ``ClientManager`` over a pollinate ``Grid``: which nodes are connected.

A strategy's ``configure_fit`` gets one; ``sample`` picks nodes the way Flower does
(uniformly at random), while the built-in strategies sample with pollinate's seeded
``FedAvg.sample_nodes`` (the same seed picks the same nodes every run).
"""

from __future__ import annotations

import random
from typing import Any, NoReturn

from ....errors import ConfigError, RoundError
from ....server import Grid
from ....strategy._fedavg import seeded_sample
from .client_proxy import ClientProxy

__all__ = ["ClientManager"]

WAIT_S = 86_400.0
"""How long Flower's client manager waits for enough clients (a day)."""


class ClientManager:
    """The nodes connected to a run's Grid, as Flower's ``ClientProxy`` objects."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._proxies: dict[int, ClientProxy] = {}

    def proxy(self, node_id: int) -> ClientProxy:
        """The one ``ClientProxy`` of ``node_id``."""
        proxy = self._proxies.get(node_id)
        if proxy is None:
            proxy = self._proxies[node_id] = ClientProxy(str(node_id), node_id)
        return proxy

    def num_available(self) -> int:
        """How many nodes are connected now."""
        return len(self.grid.node_ids())

    def all(self) -> dict[str, ClientProxy]:
        """Every connected node, by cid."""
        return {str(n): self.proxy(n) for n in sorted(self.grid.node_ids())}

    def wait_for(self, num_clients: int, timeout: float = WAIT_S) -> bool:
        """Wait until ``num_clients`` nodes are connected; False if ``timeout`` ran out first."""
        try:
            self.grid.wait_for_nodes(num_clients, timeout)
        except RoundError:  # the grid says why it gave up; Flower's answer is just False
            return False
        return True

    def sample(
        self, num_clients: int, min_num_clients: int | None = None, criterion: Any = None
    ) -> list[ClientProxy]:
        """``num_clients`` nodes picked at random, once ``min_num_clients`` are connected."""
        if criterion is not None:
            raise ConfigError(
                "a sampling criterion is not supported: filter the returned proxies instead"
            )
        self.wait_for(num_clients if min_num_clients is None else min_num_clients)
        available = sorted(self.grid.node_ids())
        if num_clients > len(available):
            return []
        return [self.proxy(n) for n in random.sample(available, num_clients)]

    def sample_seeded(
        self, num_clients: int, min_num_clients: int, seed: int, server_round: int, phase: int
    ) -> list[ClientProxy]:
        """Flower's ``sample``, reproducible: a seed, round and phase pick the same nodes.

        Waits for ``min_num_clients`` connected nodes, as Flower does; where Flower would
        skip the round in silence (too few nodes), this says so.
        """
        try:
            self.grid.wait_for_nodes(min_num_clients, WAIT_S)
        except RoundError as err:
            raise RoundError(
                f"the strategy needs {min_num_clients} connected clients "
                f"(min_available_clients), but {err}: lower it or add clients"
            ) from None
        available = sorted(self.grid.node_ids())
        if num_clients > len(available):
            raise RoundError(
                f"the strategy samples {num_clients} clients (min_fit_clients, "
                f"min_evaluate_clients) but only {len(available)} are available: lower them "
                "or add clients"
            )
        chosen = seeded_sample(available, num_clients, seed, server_round, phase)
        return [self.proxy(n) for n in chosen]

    def register(self, client: ClientProxy) -> NoReturn:
        """Not supported: nodes register themselves by connecting."""
        _nodes_connect()

    def unregister(self, client: ClientProxy) -> NoReturn:
        """Not supported: nodes leave by disconnecting."""
        _nodes_connect()


def _nodes_connect() -> NoReturn:
    raise ConfigError("nodes join and leave a pollinate run by connecting; they are not registered")
