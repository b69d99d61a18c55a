"""Small Flower clients for the compat unit tests: what they saw, and what they return."""

from __future__ import annotations

from typing import Any

import numpy as np

import pollinate.compat.flwr as fl

SEEN: dict[str, list[Any]] = {}
"""What clients saw, by kind ("cid", "writable", "config", "context"); reset per test."""


class Shift(fl.client.NumPyClient):
    """Trains to ``parameters + cid`` on ``10 * (cid + 1)`` examples; loss ``cid``."""

    def __init__(self, cid: int, fail: bool = False) -> None:
        self.cid, self.fail = cid, fail

    def get_parameters(self, config):
        return [np.zeros(3, np.float32), np.ones((2, 2), np.float64)]

    def fit(self, parameters, config):
        if self.fail:
            raise RuntimeError("this client fails")
        SEEN.setdefault("writable", []).append(all(p.flags.writeable for p in parameters))
        SEEN.setdefault("config", []).append(dict(config))
        parameters[0] += self.cid  # edits its own copy, as Flower's clients may
        return parameters, 10 * (self.cid + 1), {"fit_x": float(self.cid)}

    def evaluate(self, parameters, config):
        SEEN.setdefault("writable", []).append(all(p.flags.writeable for p in parameters))
        return float(self.cid), 10 * (self.cid + 1), {"accuracy": 0.1 * self.cid}


def shift_by_cid(cid: str) -> Shift:
    """Legacy ``client_fn(cid: str)``."""
    SEEN.setdefault("cid", []).append(cid)
    return Shift(int(cid))


def shift_by_context(context) -> fl.client.Client:
    """Current ``client_fn(context)``, returning ``to_client()`` as Flower 1.8+ does."""
    SEEN.setdefault("context", []).append(context)
    return Shift(int(context.node_config["partition-id"])).to_client()


def last_one_fails(cid: str) -> Shift:
    """Client "2" raises in fit."""
    return Shift(int(cid), fail=cid == "2")


def simulate(client_fn, strategy, num_rounds: int = 2, num_clients: int = 3):
    """``start_simulation`` on a fresh SEEN."""
    SEEN.clear()
    return fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=num_clients,
        config=fl.server.ServerConfig(num_rounds=num_rounds),
        strategy=strategy,
    )
