"""Flower tutorials keep one model object per process; what a client returned must stay put."""

import numpy as np

from pollinate.compat.flwr.client import NumPyClient
from pollinate.compat.flwr.common import ndarrays_to_parameters
from pollinate.compat.flwr.server import ServerConfig
from pollinate.compat.flwr.server.strategy import FedAvg
from pollinate.compat.flwr.simulation import start_simulation

SHARED = np.zeros(3)  # a module-level model, as a tutorial's global net


class SharedModelClient(NumPyClient):
    def __init__(self, cid: str) -> None:
        self.step = int(cid) + 1

    def get_parameters(self, config):
        return [SHARED]

    def fit(self, parameters, config):
        SHARED[:] = parameters[0] + self.step
        return [SHARED], 1, {}  # the model's own memory, which the next client trains

    def evaluate(self, parameters, config):
        return float(parameters[0][0]), 1, {}


def client_fn(cid: str):
    return SharedModelClient(cid).to_client()


def test_fedavg_averages_what_each_client_returned_not_the_last_clients_model():
    history = start_simulation(
        client_fn=client_fn,
        num_clients=2,
        config=ServerConfig(num_rounds=1),
        strategy=FedAvg(initial_parameters=ndarrays_to_parameters([np.zeros(3)])),
    )
    assert history.losses_distributed == [(1, 1.5)]  # the mean of 1 and 2, as on Flower
