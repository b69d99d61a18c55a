"""Flower's tutorial "Build a strategy from scratch" (Flower 1.x, classic API), its code cells
in order with only the flwr import lines changed. The tutorial is in Flower's repository at
framework/docs/source/tutorial-series-build-a-strategy-from-scratch-pytorch.ipynb before
commit 28e2ce292d, which rewrote it for the message API.

Stand-ins: the cells that load CIFAR-10 (flwr_datasets) and define the PyTorch Net, train and
test are replaced by the block below, a numpy softmax regression on sklearn's bundled digits
with the same function names. The tutorial makes ``server = ServerApp(server_fn=server_fn)``
before it redefines ``server_fn`` with FedCustom; here the ServerApp is made after, so that
the run uses FedCustom, as the tutorial means.
"""

from typing import Dict, List, Optional, Tuple

import numpy as np
from sklearn.datasets import load_digits

import pollinate.compat.flwr as flwr
from pollinate.compat.flwr.client import Client, ClientApp, NumPyClient
from pollinate.compat.flwr.common import Context
from pollinate.compat.flwr.server import ServerApp, ServerConfig, ServerAppComponents
from pollinate.compat.flwr.server.strategy import Strategy
from pollinate.compat.flwr.simulation import run_simulation

print(f"Flower {flwr.__version__}")

# --- stand-in for the tutorial's load_datasets, Net, get/set_parameters, train, test ---
_X, _Y = load_digits(return_X_y=True)
_X = _X / 16.0
_ORDER = np.random.default_rng(0).permutation(len(_X))


def load_datasets(partition_id, num_partitions: int):
    """Batches of 32 (x, y) pairs from one IID partition: 80% train, 20% validation."""
    part = np.array_split(_ORDER, num_partitions)[partition_id]
    cut = int(0.8 * len(part))

    def batches(idx):
        return [(_X[idx[i : i + 32]], _Y[idx[i : i + 32]]) for i in range(0, len(idx), 32)]

    return batches(part[:cut]), batches(part[cut:]), None


class Net:
    def __init__(self) -> None:
        self.weights = [np.zeros((64, 10)), np.zeros(10)]

    def to(self, device):
        return self


DEVICE = "cpu"


def get_parameters(net) -> List[np.ndarray]:
    return [w.copy() for w in net.weights]


def set_parameters(net, parameters: List[np.ndarray]):
    net.weights = [np.array(p) for p in parameters]


def _probabilities(net, x):
    logits = x @ net.weights[0] + net.weights[1]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def train(net, trainloader, epochs: int):
    for _ in range(epochs):
        for x, y in trainloader:
            p = _probabilities(net, x)
            p[np.arange(len(y)), y] -= 1
            net.weights[0] -= 0.5 * x.T @ p / len(y)
            net.weights[1] -= 0.5 * p.mean(0)


def test(net, testloader):
    losses, correct, total = [], 0, 0
    for x, y in testloader:
        p = _probabilities(net, x)
        losses.append(-np.log(p[np.arange(len(y)), y] + 1e-12).sum())
        correct += int((p.argmax(1) == y).sum())
        total += len(y)
    return float(sum(losses) / total), correct / total


# --- the tutorial's cells ----------------------------------------------------------------
class FlowerClient(NumPyClient):
    def __init__(self, partition_id, net, trainloader, valloader):
        self.partition_id = partition_id
        self.net = net
        self.trainloader = trainloader
        self.valloader = valloader

    def get_parameters(self, config):
        print(f"[Client {self.partition_id}] get_parameters")
        return get_parameters(self.net)

    def fit(self, parameters, config):
        print(f"[Client {self.partition_id}] fit, config: {config}")
        set_parameters(self.net, parameters)
        train(self.net, self.trainloader, epochs=1)
        return get_parameters(self.net), len(self.trainloader), {}

    def evaluate(self, parameters, config):
        print(f"[Client {self.partition_id}] evaluate, config: {config}")
        set_parameters(self.net, parameters)
        loss, accuracy = test(self.net, self.valloader)
        return float(loss), len(self.valloader), {"accuracy": float(accuracy)}


def client_fn(context: Context) -> Client:
    net = Net().to(DEVICE)
    partition_id = context.node_config["partition-id"]
    num_partitions = context.node_config["num-partitions"]
    trainloader, valloader, _ = load_datasets(partition_id, num_partitions)
    return FlowerClient(partition_id, net, trainloader, valloader).to_client()


# Create the ClientApp
client = ClientApp(client_fn=client_fn)


from typing import Union

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


class FedCustom(Strategy):
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
        net = Net()
        ndarrays = get_parameters(net)
        return ndarrays_to_parameters(ndarrays)

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
        standard_config = {"lr": 0.001}
        higher_lr_config = {"lr": 0.003}
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
        failures: List[Union[Tuple[ClientProxy, EvaluateRes], BaseException]],
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


NUM_PARTITIONS = 10
backend_config = {"client_resources": None}


def server_fn(context: Context) -> ServerAppComponents:
    # Configure the server for just 3 rounds of training
    config = ServerConfig(num_rounds=3)
    return ServerAppComponents(
        config=config,
        strategy=FedCustom(),  # <-- pass the new strategy here
    )


# Create the ServerApp
server = ServerApp(server_fn=server_fn)

# Run simulation
run_simulation(
    server_app=server,
    client_app=client,
    num_supernodes=NUM_PARTITIONS,
    backend_config=backend_config,
)
