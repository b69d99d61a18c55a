"""Flower 1.x tutorial "Build a strategy from scratch" (FedCustom), as Flower wrote it for the
classic API; only the flwr import lines are changed. The tutorial's PyTorch model and
CIFAR-10 loaders (earlier notebook cells) are replaced by the stand-in block below: a numpy
softmax regression on sklearn's bundled digits."""

from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from sklearn.datasets import load_digits

import pollinate.compat.flwr as fl
from pollinate.compat.flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from pollinate.compat.flwr.server.client_manager import ClientManager
from pollinate.compat.flwr.server.client_proxy import ClientProxy
from pollinate.compat.flwr.server.strategy.aggregate import aggregate, weighted_loss_avg

# --- stand-in for the tutorial's Net, train, test and load_datasets -------------------
NUM_CLIENTS = 10
X, Y = load_digits(return_X_y=True)
X = X / 16.0
PARTS = np.array_split(np.random.default_rng(0).permutation(len(X)), NUM_CLIENTS)


def get_parameters(net=None):
    return [np.zeros((64, 10)), np.zeros(10)]


def _probabilities(parameters, x):
    logits = x @ parameters[0] + parameters[1]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def train(parameters, x, y, lr, epochs=5):
    for _ in range(epochs):
        p = _probabilities(parameters, x)
        p[np.arange(len(y)), y] -= 1
        parameters[0] -= lr * x.T @ p / len(y)  # in place, as Flower's arrays are writable
        parameters[1] -= lr * p.mean(0)
    return parameters


def test(parameters, x, y):
    p = _probabilities(parameters, x)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return loss, float((p.argmax(1) == y).mean())


def load_partition(cid):
    idx = PARTS[int(cid)]
    cut = int(0.8 * len(idx))
    return X[idx[:cut]], Y[idx[:cut]], X[idx[cut:]], Y[idx[cut:]]


# --- the tutorial's code ----------------------------------------------------------------
class FlowerClient(fl.client.NumPyClient):
    def __init__(self, cid, trainloader, valloader):
        self.cid = cid
        self.trainloader = trainloader
        self.valloader = valloader

    def get_parameters(self, config):
        print(f"[Client {self.cid}] get_parameters")
        return get_parameters()

    def fit(self, parameters, config):
        print(f"[Client {self.cid}] fit, config: {config}")
        parameters = train(parameters, *self.trainloader, lr=config["lr"])
        return parameters, len(self.trainloader[0]), {"lr": config["lr"]}

    def evaluate(self, parameters, config):
        print(f"[Client {self.cid}] evaluate, config: {config}")
        loss, accuracy = test(parameters, *self.valloader)
        return float(loss), len(self.valloader[0]), {"accuracy": float(accuracy)}


def client_fn(cid) -> FlowerClient:
    x, y, xv, yv = load_partition(cid)
    return FlowerClient(cid, (x, y), (xv, yv)).to_client()


class FedCustom(fl.server.strategy.Strategy):
    def __init__(
        self,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
    ) -> None:
        super().__init__()
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients

    def __repr__(self) -> str:
        return "FedCustom"

    def initialize_parameters(
        self, client_manager: ClientManager
    ) -> Optional[Parameters]:
        """Initialize global model parameters."""
        ndarrays = get_parameters()
        return fl.common.ndarrays_to_parameters(ndarrays)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> List[Tuple[ClientProxy, FitIns]]:
        """Configure the next round of training."""

        # Sample clients
        sample_size, min_num_clients = self.num_fit_clients(
            client_manager.num_available()
        )
        clients = client_manager.sample(
            num_clients=sample_size, min_num_clients=min_num_clients
        )

        # Create custom configs
        n_clients = len(clients)
        half_clients = n_clients // 2
        standard_config = {"lr": 0.5}
        higher_lr_config = {"lr": 1.0}
        fit_configurations = []
        for idx, client in enumerate(clients):
            if idx < half_clients:
                fit_configurations.append((client, FitIns(parameters, standard_config)))
            else:
                fit_configurations.append(
                    (client, FitIns(parameters, higher_lr_config))
                )
        return fit_configurations

    def aggregate_fit(
        self,
        server_round: int,
        results: List[Tuple[ClientProxy, FitRes]],
        failures: List[Union[Tuple[ClientProxy, FitRes], BaseException]],
    ) -> Tuple[Optional[Parameters], Dict[str, Scalar]]:
        """Aggregate fit results using weighted average."""

        weights_results = [
            (parameters_to_ndarrays(fit_res.parameters), fit_res.num_examples)
            for _, fit_res in results
        ]
        parameters_aggregated = ndarrays_to_parameters(aggregate(weights_results))
        metrics_aggregated = {}
        return parameters_aggregated, metrics_aggregated

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> List[Tuple[ClientProxy, EvaluateIns]]:
        """Configure the next round of evaluation."""
        if self.fraction_evaluate == 0.0:
            return []
        config = {}
        evaluate_ins = EvaluateIns(parameters, config)

        # Sample clients
        sample_size, min_num_clients = self.num_evaluation_clients(
            client_manager.num_available()
        )
        clients = client_manager.sample(
            num_clients=sample_size, min_num_clients=min_num_clients
        )

        # Return client/config pairs
        return [(client, evaluate_ins) for client in clients]

    def aggregate_evaluate(
        self,
        server_round: int,
        results: List[Tuple[ClientProxy, EvaluateRes]],
        failures: List[Union[Tuple[ClientProxy, FitRes], BaseException]],
    ) -> Tuple[Optional[float], Dict[str, Scalar]]:
        """Aggregate evaluation losses using weighted average."""

        if not results:
            return None, {}

        loss_aggregated = weighted_loss_avg(
            [
                (evaluate_res.num_examples, evaluate_res.loss)
                for _, evaluate_res in results
            ]
        )
        metrics_aggregated = {}
        return loss_aggregated, metrics_aggregated

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> Optional[Tuple[float, Dict[str, Scalar]]]:
        """Evaluate global model parameters using an evaluation function."""

        # Let's assume we won't perform the global model evaluation on the server side.
        return None

    def num_fit_clients(self, num_available_clients: int) -> Tuple[int, int]:
        """Return sample size and required number of clients."""
        num_clients = int(num_available_clients * self.fraction_fit)
        return max(num_clients, self.min_fit_clients), self.min_available_clients

    def num_evaluation_clients(self, num_available_clients: int) -> Tuple[int, int]:
        """Use a fraction of available clients for evaluation."""
        num_clients = int(num_available_clients * self.fraction_evaluate)
        return max(num_clients, self.min_evaluate_clients), self.min_available_clients


if __name__ == "__main__":
    history = fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=NUM_CLIENTS,
        config=fl.server.ServerConfig(num_rounds=3),
        strategy=FedCustom(),
        client_resources={"num_cpus": 1, "num_gpus": 0.0},
    )
