"""Compat overhead: the seed-002 tutorial on ``compat.flwr.simulation.start_simulation``
against the same run on pollinate's native API.

Workload (Flower's "An Introduction to Federated Learning", seed 002): the tutorial's CNN on
CIFAR-shaped synthetic data (3x32x32, ten classes, a learnable signal), 10 clients, FedAvg
with fraction_evaluate 0.5 and a weighted accuracy, one local epoch per round. The compat run
is the tutorial's code (a Flower NumPyClient, ``client_fn(cid)``, ``FedAvg(fraction_fit=...,
evaluate_metrics_aggregation_fn=...)``); the native run is the same work written with
``pollinate.NumPyClient`` and ``pollinate.FedAvg`` on ``run_simulation``. Runs alternate
(native, compat, native, compat...) so load on the machine falls on both alike; each pair's
ratio compat/native is printed, then their median (the goal: <= 1.05, the adapter costs
nothing), after one untimed warm-up run of each. ``--quick`` is a smoke run of a few
seconds: 1 pair of 1 round on little data.

usage: python benchmarks/compat_overhead.py [--pairs N] [--rounds N] [--per-client N] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import pollinate
import pollinate.compat.flwr as fl

NUM_CLIENTS = 10
BATCH_SIZE = 32
GOAL = 1.05


class Net(nn.Module):
    """The tutorial's CNN (PyTorch's "60 minute blitz" network)."""

    def __init__(self) -> None:
        super().__init__()
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
        return self.fc3(x)


Loaders = tuple[list[DataLoader[Any]], list[DataLoader[Any]]]


def load_datasets(per_client: int) -> Loaders:
    """Ten partitions of CIFAR-shaped images (class = a fixed pattern under noise), 90/10 split."""
    templates = torch.randn(10, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (NUM_CLIENTS * per_client,), generator=gen)
    images = templates[labels] + 0.5 * torch.randn(len(labels), 3, 32, 32, generator=gen)
    parts = random_split(
        TensorDataset(images, labels), [per_client] * NUM_CLIENTS, torch.Generator().manual_seed(42)
    )
    trainloaders, valloaders = [], []
    for part in parts:
        len_val = len(part) // 10
        train, val = random_split(
            part, [len(part) - len_val, len_val], torch.Generator().manual_seed(42)
        )
        trainloaders.append(DataLoader(train, batch_size=BATCH_SIZE, shuffle=True))
        valloaders.append(DataLoader(val, batch_size=BATCH_SIZE))
    return trainloaders, valloaders


def train(net: Net, loader: DataLoader[Any]) -> None:
    """One epoch of Adam, as the tutorial's train(net, trainloader, epochs=1)."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters())
    for images, labels in loader:
        optimizer.zero_grad()
        criterion(net(images), labels).backward()
        optimizer.step()


def test(net: Net, loader: DataLoader[Any]) -> tuple[float, float]:
    """Loss and accuracy, as the tutorial's test(net, testloader)."""
    criterion = nn.CrossEntropyLoss()
    correct, total, loss = 0, 0, 0.0
    with torch.no_grad():
        for images, labels in loader:
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            correct += int((outputs.argmax(1) == labels).sum().item())
            total += labels.size(0)
    return loss / total, correct / total


def get_parameters(net: Net) -> list[np.ndarray[Any, Any]]:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_parameters(net: Net, parameters: list[np.ndarray[Any, Any]]) -> None:
    params = zip(net.state_dict().keys(), parameters, strict=True)
    net.load_state_dict(OrderedDict({k: torch.tensor(v) for k, v in params}), strict=True)


class Work:
    """What every client does, whichever API calls it."""

    def __init__(self, trainloader: DataLoader[Any], valloader: DataLoader[Any]) -> None:
        self.net, self.trainloader, self.valloader = Net(), trainloader, valloader

    def get_parameters(self, config: Any) -> list[np.ndarray[Any, Any]]:
        return get_parameters(self.net)

    def fit(self, parameters: Any, config: Any) -> tuple[Any, int, dict[str, Any]]:
        set_parameters(self.net, parameters)
        train(self.net, self.trainloader)
        return get_parameters(self.net), len(self.trainloader), {}

    def evaluate(self, parameters: Any, config: Any) -> tuple[float, int, dict[str, Any]]:
        set_parameters(self.net, parameters)
        loss, accuracy = test(self.net, self.valloader)
        return float(loss), len(self.valloader), {"accuracy": float(accuracy)}


class FlowerClient(Work, fl.client.NumPyClient):
    """The tutorial's client on the compat layer."""


class NativeClient(Work, pollinate.NumPyClient):
    """The same client on pollinate's own NumPyClient."""


def weighted_average(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    accuracies = [n * m["accuracy"] for n, m in metrics]
    return {"accuracy": sum(accuracies) / sum(n for n, _ in metrics)}


def run_compat(loaders: Loaders, rounds: int) -> float:
    """The tutorial's start_simulation; returns the last round's accuracy."""
    trainloaders, valloaders = loaders

    def client_fn(cid: str) -> FlowerClient:
        return FlowerClient(trainloaders[int(cid)], valloaders[int(cid)])

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.5,
        min_fit_clients=10,
        min_evaluate_clients=5,
        min_available_clients=10,
        evaluate_metrics_aggregation_fn=weighted_average,
    )
    history = fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=NUM_CLIENTS,
        config=fl.server.ServerConfig(num_rounds=rounds),
        strategy=strategy,
    )
    return float(history.metrics_distributed["accuracy"][-1][1])


def run_native(loaders: Loaders, rounds: int) -> float:
    """The same run on run_simulation; returns the last round's accuracy."""
    trainloaders, valloaders = loaders

    def client_fn(context: pollinate.Context) -> NativeClient:
        partition = int(context.node_config["partition-id"])
        return NativeClient(trainloaders[partition], valloaders[partition])

    strategy = pollinate.FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.5,
        min_train_nodes=10,
        min_evaluate_nodes=5,
        min_available_nodes=10,
    )
    result = pollinate.run_simulation(
        client_fn=client_fn, strategy=strategy, num_rounds=rounds, num_nodes=NUM_CLIENTS
    )
    return float(result.metrics("evaluate")[rounds]["accuracy"])


def timed(
    run: Callable[[Loaders, int], float], loaders: Loaders, rounds: int
) -> tuple[float, float]:
    """Seconds for one run from the same seed, and its final accuracy."""
    torch.manual_seed(0)
    began = time.perf_counter()
    accuracy = run(loaders, rounds)
    return time.perf_counter() - began, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-client", type=int, default=500, help="examples per client")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.rounds, args.per_client = 1, 1, 40
    logging.getLogger("pollinate").setLevel(logging.ERROR)  # the figures, not the round logs
    torch.set_num_threads(1)
    loaders = load_datasets(args.per_client)
    print(
        f"seed-002 workload: {NUM_CLIENTS} clients, {args.per_client} examples each, "
        f"{args.rounds} rounds, inline, torch threads 1"
    )
    timed(run_native, loaders, 1)  # warm-up, not timed: torch's and the imports' first costs
    timed(run_compat, loaders, 1)
    ratios = []
    for pair in range(1, args.pairs + 1):
        native_s, native_acc = timed(run_native, loaders, args.rounds)
        compat_s, compat_acc = timed(run_compat, loaders, args.rounds)
        ratios.append(compat_s / native_s)
        print(
            f"pair {pair}: native {native_s:.2f} s (accuracy {native_acc:.3f})  "
            f"compat {compat_s:.2f} s (accuracy {compat_acc:.3f})  ratio {ratios[-1]:.3f}"
        )
    median = statistics.median(ratios)
    verdict = "meets" if median <= GOAL else "MISSES"
    print(f"median ratio {median:.3f} over {len(ratios)} pairs: goal <= {GOAL:.2f} {verdict}")


if __name__ == "__main__":
    main()
