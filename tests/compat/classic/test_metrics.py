"""Flower's metrics are Scalars (bool, bytes, float, int, str); pollinate's are numbers."""

import numpy as np

from pollinate.compat.flwr.client import NumPyClient
from pollinate.compat.flwr.common import ndarrays_to_parameters
from pollinate.compat.flwr.server import ServerConfig
from pollinate.compat.flwr.server.strategy import FedAvg
from pollinate.compat.flwr.simulation import start_simulation


class TalkativeClient(NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(2)]

    def fit(self, parameters, config):
        return [parameters[0] + 1], 3, {"converged": True, "device": "cpu", "loss": 0.5}

    def evaluate(self, parameters, config):
        return 0.25, 3, {"accuracy": 0.75, "note": b"raw"}


def test_text_metrics_reach_the_aggregation_as_flower_gives_them_and_the_reply_counts():
    seen = []

    def fit_metrics(metrics):
        seen.extend(m for _, m in metrics)
        return {}

    strategy = FedAvg(
        initial_parameters=ndarrays_to_parameters([np.zeros(2)]),
        fit_metrics_aggregation_fn=fit_metrics,
        evaluate_metrics_aggregation_fn=lambda metrics: {"accuracy": metrics[0][1]["accuracy"]},
    )
    history = start_simulation(
        client_fn=lambda cid: TalkativeClient().to_client(),
        num_clients=2,
        config=ServerConfig(num_rounds=2),
        strategy=strategy,
    )
    assert history.losses_distributed == [(1, 0.25), (2, 0.25)]  # every reply counted
    assert history.metrics_distributed == {"accuracy": [(1, 0.75), (2, 0.75)]}
    assert seen[0] == {"converged": True, "device": "cpu", "loss": 0.5}  # as the client said
