# ruff: noqa: UP006, UP008, UP035, B905  (the tutorial's own code, kept as printed)
"""Seed 002 (Flower's "An Introduction to Federated Learning", PyTorch, CIFAR-10) on compat.

The tutorial's code as printed in ../shared/seeds/002_*.txt, with only the Flower imports
changed (``import flwr as fl`` -> ``import pollinate.compat.flwr as fl``) and the text's
lost pieces filled in as Flower's tutorial has them (``self.net``, ``.to(DEVICE)``, the
optimizer steps). CIFAR-10 is not on this machine: ``load_datasets`` builds CIFAR-shaped
tensors (3x32x32, ten classes) with a learnable signal instead, few per client. Rounds:
3 instead of 5, to keep the test short.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset, random_split  # noqa: E402

import pollinate.compat.flwr as fl  # noqa: E402  # was: import flwr as fl
from pollinate.compat.flwr.common import Metrics  # noqa: E402  # was: from flwr.common import Metrics

DEVICE = torch.device("cpu")
NUM_CLIENTS = 10
BATCH_SIZE = 32
NUM_ROUNDS = 3
PER_CLIENT = 50  # CIFAR-10's 5000 per client, scaled down


def synthetic_cifar(count: int, seed: int) -> TensorDataset:
    """CIFAR-shaped images whose class is a fixed random pattern under noise (learnable)."""
    patterns = torch.Generator().manual_seed(7)
    templates = torch.randn(10, 3, 32, 32, generator=patterns)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=gen)
    images = templates[labels] + 0.5 * torch.randn(count, 3, 32, 32, generator=gen)
    return TensorDataset(images, labels)


def load_datasets():
    # Stand-in for CIFAR10("./dataset", ...): synthetic tensors of CIFAR's shape
    trainset = synthetic_cifar(NUM_CLIENTS * PER_CLIENT, seed=1)
    testset = synthetic_cifar(100, seed=2)

    # Split training set into 10 partitions to simulate the individual dataset
    partition_size = len(trainset) // NUM_CLIENTS
    lengths = [partition_size] * NUM_CLIENTS
    datasets = random_split(trainset, lengths, torch.Generator().manual_seed(42))

    # Split each partition into train/val and create DataLoader
    trainloaders = []
    valloaders = []
    for ds in datasets:
        len_val = len(ds) // 10  # 10 % validation set
        len_train = len(ds) - len_val
        lengths = [len_train, len_val]
        ds_train, ds_val = random_split(ds, lengths, torch.Generator().manual_seed(42))
        trainloaders.append(DataLoader(ds_train, batch_size=BATCH_SIZE, shuffle=True))
        valloaders.append(DataLoader(ds_val, batch_size=BATCH_SIZE))
    testloader = DataLoader(testset, batch_size=BATCH_SIZE)
    return trainloaders, valloaders, testloader


class Net(nn.Module):
    def __init__(self) -> None:
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def train(net, trainloader, epochs: int, verbose=False):
    """Train the network on the training set."""
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters())
    net.train()
    for epoch in range(epochs):
        correct, total, epoch_loss = 0, 0, 0.0
        for images, labels in trainloader:
            images, labels = images.to(DEVICE), labels.to(DEVICE)
            optimizer.zero_grad()
            outputs = net(images)
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            # Metrics
            epoch_loss += loss
            total += labels.size(0)
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
        epoch_loss /= len(testloader.dataset)
        epoch_acc = correct / total
        if verbose:
            print(f"Epoch {epoch + 1}: train loss {epoch_loss}, accuracy {epoch_acc}")


def test(net, testloader):
    """Evaluate the network on the entire test set."""
    criterion = torch.nn.CrossEntropyLoss()
    correct, total, loss = 0, 0, 0.0
    net.eval()
    with torch.no_grad():
        for images, labels in testloader:
            images, labels = images.to(DEVICE), labels.to(DEVICE)
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    loss /= len(testloader.dataset)
    accuracy = correct / total
    return loss, accuracy


test.__test__ = False  # the tutorial's test(), not a pytest test

trainloaders, valloaders, testloader = load_datasets()


def get_parameters(net) -> List[np.ndarray]:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_parameters(net, parameters: List[np.ndarray]):
    params_dict = zip(net.state_dict().keys(), parameters)
    state_dict = OrderedDict({k: torch.Tensor(v) for k, v in params_dict})
    net.load_state_dict(state_dict, strict=True)


class FlowerClient(fl.client.NumPyClient):
    def __init__(self, net, trainloader, valloader):
        self.net = net
        self.trainloader = trainloader
        self.valloader = valloader

    def get_parameters(self, config):
        return get_parameters(self.net)

    def fit(self, parameters, config):
        set_parameters(self.net, parameters)
        train(self.net, self.trainloader, epochs=1)
        return get_parameters(self.net), len(self.trainloader), {}

    def evaluate(self, parameters, config):
        set_parameters(self.net, parameters)
        loss, accuracy = test(self.net, self.valloader)
        return float(loss), len(self.valloader), {"accuracy": float(accuracy)}


def client_fn(cid: str) -> FlowerClient:
    """Create a Flower client representing a single organization."""

    # Load model
    net = Net().to(DEVICE)

    # Load data (CIFAR-10)
    # Note: each client gets a different trainloader/valloader, so each client
    # will train and evaluate on their own unique data
    trainloader = trainloaders[int(cid)]
    valloader = valloaders[int(cid)]

    # Create a  single Flower client representing a single organization
    return FlowerClient(net, trainloader, valloader)


def weighted_average(metrics: List[Tuple[int, Metrics]]) -> Metrics:
    # Multiply accuracy of each client by number of examples used
    accuracies = [num_examples * m["accuracy"] for num_examples, m in metrics]
    examples = [num_examples for num_examples, _ in metrics]

    # Aggregate and return custom metric (weighted average)
    return {"accuracy": sum(accuracies) / sum(examples)}


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def run(strategy):
    # Specify client resources if you need GPU (defaults to 1 CPU and 0 GPU)
    client_resources = None
    if DEVICE.type == "cuda":
        client_resources = {"num_gpus": 1}

    # Start simulation
    return fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=NUM_CLIENTS,
        config=fl.server.ServerConfig(num_rounds=NUM_ROUNDS),
        strategy=strategy,
        client_resources=client_resources,
    )


def test_fedavg_fills_only_losses_distributed_until_metrics_are_aggregated(caplog):
    # Create FedAvg strategy
    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0,  # Sample 100% of available clients for training
        fraction_evaluate=0.5,  # Sample 50% of available clients for evaluation
        min_fit_clients=10,  # Never sample less than 10 clients for training
        min_evaluate_clients=5,  # Never sample less than 5 clients for evaluation
        min_available_clients=10,  # Wait until all 10 clients are available
    )
    with caplog.at_level("WARNING", logger="pollinate.flwr"):
        history = run(strategy)

    # "all metrics except for losses_distributed are empty"
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3]
    assert all(np.isfinite(loss) for _, loss in history.losses_distributed)
    assert history.metrics_distributed == {}
    assert history.metrics_distributed_fit == {}
    assert history.losses_centralized == [] and history.metrics_centralized == {}
    said = [r.getMessage() for r in caplog.records]
    assert said.count("No evaluate_metrics_aggregation_fn provided") == 1


def test_weighted_average_gives_accuracy_each_round_above_chance():
    # Create FedAvg strategy
    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.5,
        min_fit_clients=10,
        min_evaluate_clients=5,
        min_available_clients=10,
        evaluate_metrics_aggregation_fn=weighted_average,  # <-- pass the metric aggregation fn
    )
    history = run(strategy)

    accuracy = history.metrics_distributed["accuracy"]
    assert [r for r, _ in accuracy] == [1, 2, 3]
    assert accuracy[-1][1] > 0.3, accuracy  # ten classes: chance is 0.1
    assert history.losses_distributed[-1][1] < history.losses_distributed[0][1]
    assert "History (metrics, distributed, evaluate):" in repr(history)
    # "losses_centralized and metrics_centralized are still empty"
    assert history.losses_centralized == [] and history.metrics_centralized == {}
