"""A strategy written from scratch against Flower's classic ``Strategy`` (its six abstract
methods), run as a script: ``ServerApp(server_fn=...)``, ``ClientApp(client_fn=...)`` and
``run_simulation(server_app=..., client_app=..., num_supernodes=...)``.

The task is linear regression in numpy: every node holds noisy samples of the same line in
four dimensions, so the averaged model should find ``TRUE_WEIGHTS``. The strategy hands half
of each round's nodes a larger step size, which only a strategy of one's own can do.
"""

import numpy as np

import pollinate.compat.flwr as flwr
from pollinate.compat.flwr.client import ClientApp, NumPyClient
from pollinate.compat.flwr.common import (
    Context,
    EvaluateIns,
    FitIns,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from pollinate.compat.flwr.server import ServerApp, ServerAppComponents, ServerConfig
from pollinate.compat.flwr.server.strategy import Strategy
from pollinate.compat.flwr.server.strategy.aggregate import aggregate, weighted_loss_avg
from pollinate.compat.flwr.simulation import run_simulation

NODES, ROUNDS = 10, 3
TRUE_WEIGHTS = np.array([1.5, -2.0, 0.5, 3.0])
STEP_SIZES = (0.05, 0.2)  # the first half of a round's nodes get the smaller one
MEAN_LOSSES: list[float] = []  # the aggregated evaluation loss of each round
FINAL: dict[str, np.ndarray] = {}  # the last aggregated weights


def node_samples(node: int) -> tuple[np.ndarray, np.ndarray]:
    """40 points on the true line, with a little noise, different on every node."""
    rng = np.random.default_rng(node)
    x = rng.normal(size=(40, TRUE_WEIGHTS.size))
    return x, x @ TRUE_WEIGHTS + rng.normal(scale=0.1, size=40)


class LineClient(NumPyClient):
    """Ten gradient steps on the squared error, at the step size the server sends."""

    def __init__(self, node: int) -> None:
        self.node = node
        self.x, self.y = node_samples(node)

    def fit(self, parameters, config):
        print(f"node {self.node}: fit with lr={config['lr']}")
        (weights,) = parameters
        for _ in range(10):
            weights = weights - config["lr"] * self.x.T @ (self.x @ weights - self.y) / len(self.y)
        return [weights], len(self.y), {}

    def evaluate(self, parameters, config):
        (weights,) = parameters
        return float(np.mean((self.x @ weights - self.y) ** 2)), len(self.y), {}


def client_fn(context: Context):
    return LineClient(context.node_config["partition-id"]).to_client()


class SplitStepSizes(Strategy):
    """Every node each round; half train with the small step size, half with the large."""

    def initialize_parameters(self, client_manager):
        return ndarrays_to_parameters([np.zeros(TRUE_WEIGHTS.size)])

    def configure_fit(self, server_round, parameters, client_manager):
        nodes = client_manager.sample(num_clients=client_manager.num_available(), min_num_clients=2)
        half = len(nodes) // 2
        return [
            (node, FitIns(parameters, {"lr": STEP_SIZES[i >= half]}))
            for i, node in enumerate(nodes)
        ]

    def aggregate_fit(self, server_round, results, failures):
        updates = [(parameters_to_ndarrays(r.parameters), r.num_examples) for _, r in results]
        averaged = aggregate(updates)
        FINAL["weights"] = averaged[0]
        return ndarrays_to_parameters(averaged), {}

    def configure_evaluate(self, server_round, parameters, client_manager):
        nodes = client_manager.sample(num_clients=client_manager.num_available(), min_num_clients=2)
        return [(node, EvaluateIns(parameters, {})) for node in nodes]

    def aggregate_evaluate(self, server_round, results, failures):
        if not results:
            return None, {}
        loss = weighted_loss_avg([(r.num_examples, r.loss) for _, r in results])
        MEAN_LOSSES.append(loss)
        return loss, {}

    def evaluate(self, server_round, parameters):
        return None  # no data on the server: the nodes evaluate


def server_fn(context: Context):
    return ServerAppComponents(strategy=SplitStepSizes(), config=ServerConfig(num_rounds=ROUNDS))


if __name__ == "__main__":
    print(f"pollinate.compat.flwr {flwr.__version__}")
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=NODES,
        backend_config={"client_resources": None},
    )
