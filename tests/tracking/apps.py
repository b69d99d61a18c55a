"""A short real simulation for the trackers to hear."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pollinate import ClientApp, FedAvg, Result, run_simulation
from pollinate.server import RunObserver

from ..simulation.fixture_apps import _noisy_update, initial_arrays

ROUNDS = 2
RUN_CONFIG = {"learning-rate": 0.1, "optimizer": "sgd", "clip": True}

failing_on_node_2 = ClientApp()


@failing_on_node_2.train()
def _train(msg, context):
    if context.node_id == 2:
        raise RuntimeError("node 2 fails on purpose")
    return _noisy_update(msg, context)


def evaluate(server_round: int, arrays: object) -> dict[str, object]:
    """Centralized metrics: a loss that falls, a NaN and a list (neither is a scalar to track)."""
    return {"loss": 1.0 / (server_round + 1), "diverged": math.nan, "per-class": [0.5, 0.25]}


def simulate(observers: Sequence[RunObserver]) -> Result:
    """Two rounds on three nodes, node 2 failing each time (so replies are set aside)."""
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2)
    app = strategy.as_server_app(ROUNDS, initial_arrays(), evaluate_fn=evaluate)
    return run_simulation(
        app,
        failing_on_node_2,
        num_nodes=3,
        observers=observers,
        run_config=RUN_CONFIG,
        verbose=False,
    )
