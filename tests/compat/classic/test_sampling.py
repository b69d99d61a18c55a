"""Flower's sampling rule (``num_fit_clients``), made reproducible by pollinate's seed."""

import numpy as np

from pollinate.compat.flwr.client import NumPyClient
from pollinate.compat.flwr.server import ServerConfig
from pollinate.compat.flwr.server.strategy import FedAvg
from pollinate.compat.flwr.simulation import start_simulation


class Plain(NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(3)]

    def fit(self, parameters, config):
        return [parameters[0] + 1], 1, {}

    def evaluate(self, parameters, config):
        return 0.0, 1, {}


def test_the_sample_size_comes_from_num_fit_clients_and_the_current_settings():
    sizes = []

    class OneClient(FedAvg):
        def num_fit_clients(self, num_available_clients):
            return 1, 1

        def aggregate_fit(self, server_round, results, failures):
            sizes.append(len(results))
            return super().aggregate_fit(server_round, results, failures)

    run = {"client_fn": lambda cid: Plain().to_client(), "num_clients": 4}
    start_simulation(**run, config=ServerConfig(num_rounds=1), strategy=OneClient())
    changed = FedAvg()  # changed after it was made, as a Flower script may
    changed.fraction_fit, changed.min_fit_clients = 0.5, 1
    changed.aggregate_fit = lambda r, results, f: (sizes.append(len(results)), (None, {}))[1]
    start_simulation(**run, config=ServerConfig(num_rounds=1), strategy=changed)
    assert sizes == [1, 2]
