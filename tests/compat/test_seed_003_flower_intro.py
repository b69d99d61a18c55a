"""Seed 003 ("Introduction to FLOWER", Ankita Sinha) on the compat layer, over real gRPC.

The article's code was lost from its text; it describes a server started with
``FedAvg(fraction_fit=0.1, min_available_clients=3)`` for 3 rounds and a PyTorch image
classifier in a NumPyClient (get_parameters, set_parameters, fit, evaluate), run by 3
clients. That is written here in Flower 1.x style with the compat imports; the images are
small synthetic ones with a learnable class signal, made in the test.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import pollinate.compat.flwr as fl  # noqa: E402  # was: import flwr as fl

from ._threads import free_address, run_federation  # noqa: E402

NUM_CLASSES = 4


def load_data(seed: int) -> tuple[DataLoader, DataLoader]:
    """A device's local images (1x12x12), each class a fixed pattern under noise."""
    templates = torch.randn(NUM_CLASSES, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (80,), generator=gen)
    images = templates[labels] + 0.5 * torch.randn(80, 1, 12, 12, generator=gen)
    train = TensorDataset(images[:60], labels[:60])
    test = TensorDataset(images[60:], labels[60:])
    return DataLoader(train, batch_size=16, shuffle=True), DataLoader(test, batch_size=16)


class Net(nn.Module):
    """A simple image classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(144, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def train(net, trainloader, epochs):
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            criterion(net(images), labels).backward()
            optimizer.step()


def test(net, testloader):
    criterion = nn.CrossEntropyLoss()
    correct, total, loss = 0, 0, 0.0
    with torch.no_grad():
        for images, labels in testloader:
            outputs = net(images)
            loss += criterion(outputs, labels).item() * labels.size(0)
            correct += (outputs.argmax(1) == labels).sum().item()
            total += labels.size(0)
    return loss / total, correct / total


test.__test__ = False  # the client's test(), not a pytest test


class FlowerClient(fl.client.NumPyClient):
    """The article's client: get/set parameters, fit and evaluate on local data."""

    def __init__(self, net, trainloader, testloader):
        self.net, self.trainloader, self.testloader = net, trainloader, testloader
        self.fits = 0
        self.last_accuracy = None

    def get_parameters(self, config):
        return [val.cpu().numpy() for _, val in self.net.state_dict().items()]

    def set_parameters(self, parameters):
        params_dict = zip(self.net.state_dict().keys(), parameters, strict=True)
        state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
        self.net.load_state_dict(state_dict, strict=True)

    def fit(self, parameters, config):
        self.set_parameters(parameters)
        train(self.net, self.trainloader, epochs=1)
        self.fits += 1
        return self.get_parameters(config={}), len(self.trainloader.dataset), {}

    def evaluate(self, parameters, config):
        self.set_parameters(parameters)
        loss, accuracy = test(self.net, self.testloader)
        self.last_accuracy = accuracy
        return float(loss), len(self.testloader.dataset), {"accuracy": float(accuracy)}


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_three_devices_train_with_fraction_fit_and_first_come_first_serve(caplog):
    address = free_address()
    clients = [FlowerClient(Net(), *load_data(seed)) for seed in range(3)]

    def server():  # server.py
        return fl.server.start_server(
            server_address=address,
            config=fl.server.ServerConfig(num_rounds=3),
            strategy=fl.server.strategy.FedAvg(fraction_fit=0.1, min_available_clients=3),
        )

    def client(flower_client):  # client.py, run on each of the 3 devices
        return lambda: fl.client.start_numpy_client(server_address=address, client=flower_client)

    with caplog.at_level("WARNING"):
        history = run_federation(server, [client(c) for c in clients])

    # fraction_fit=0.1 of 3 clients is 0, so Flower's floor min_fit_clients=2 trains each round
    assert sum(c.fits for c in clients) == 2 * 3
    # every round evaluates all 3 (fraction_evaluate=1.0); the loss is example-weighted
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3]
    assert history.metrics_distributed == {}  # no evaluate_metrics_aggregation_fn given
    assert all(c.last_accuracy > 1 / NUM_CLASSES + 0.25 for c in clients)
    # plain text, as in Flower: said once per process (naming the fix), not again per node
    assert not [r for r in caplog.records if r.getMessage().startswith("plain text (--insecure)")]
    assert np.isfinite(history.losses_distributed[-1][1])
