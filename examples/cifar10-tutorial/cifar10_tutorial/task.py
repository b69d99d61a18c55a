"""Model, data and training for the CIFAR-10 tutorial: a LeNet-style CNN on 32x32 RGB images.

CIFAR-10 comes from ``pollinate.datasets.load_cifar10`` (the binary archive, read once per
process, never downloaded behind the user's back). Its 50,000 training images are split IID
over the clients with a fixed seed, and each client holds back a tenth of its share to
evaluate the global model on (federated evaluation).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pollinate.datasets import cache_root, load_cifar10
from pollinate.datasets.partition import iid
from pollinate.errors import ConfigError

ARCHIVE = "cifar-10-binary.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
PARTITION_SEED = 0
VALIDATION_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Split:
    """Images (float32, N x 3 x 32 x 32, scaled to [-1, 1]) and their labels (int64)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, slots=True)
class ClientData:
    """What one client holds: images to train on, and held-back ones to evaluate on."""

    train: Split
    validation: Split


class Net(nn.Module):
    """The LeNet-style CNN of the PyTorch and Flower CIFAR-10 tutorials (62,006 weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def make_model(seed: int) -> Net:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return Net()


def get_weights(net: nn.Module) -> list[npt.NDArray[Any]]:
    """The model's weights as numpy arrays, in ``state_dict`` order."""
    return [tensor.detach().cpu().numpy() for tensor in net.state_dict().values()]


def set_weights(net: nn.Module, weights: list[npt.NDArray[Any]]) -> None:
    """Load weights given in ``state_dict`` order (copied: received arrays are read-only)."""
    names = net.state_dict().keys()
    state = OrderedDict((name, torch.tensor(w)) for name, w in zip(names, weights, strict=True))
    net.load_state_dict(state, strict=True)


def data_folder(data_dir: str) -> Path:
    """Where the archive is looked for: ``data-dir``, or pollinate's cache when it is empty."""
    return Path(data_dir).expanduser() if data_dir else cache_root() / "cifar10"


def check_data(data_dir: str) -> Path:
    """The folder holding the archive, or a ConfigError saying where to put it and how."""
    folder = data_folder(data_dir)
    if (folder / ARCHIVE).is_file():
        return folder
    where = (
        f"into {folder}"
        if data_dir
        else f"into {folder} (pollinate's data cache, used while data-dir is empty) or into "
        "a folder of your choice and run with --run-config data-dir=/that/folder"
    )
    fetch = f"from pollinate.datasets import load_cifar10; load_cifar10({str(folder)!r})"
    raise ConfigError(
        f"CIFAR-10 not found: {folder / ARCHIVE} does not exist. Download {ARCHIVE} "
        f'(170 MB) from {URL} {where}; or let pollinate download and check it: python -c "{fetch}"'
    )


@functools.lru_cache(maxsize=1)
def load_train_set(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 50,000 training images (uint8, N x 3 x 32 x 32) and labels, read once per process."""
    dataset = load_cifar10(check_data(data_dir), download=False)
    images = torch.from_numpy(dataset.x_train).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(dataset.y_train)


def load_partition(data_dir: str, partition_id: int, num_partitions: int) -> ClientData:
    """Client ``partition_id``'s data: an IID share (fixed seed), a tenth of it held back."""
    images, labels = load_train_set(data_dir)
    share = iid(len(labels), num_partitions, seed=PARTITION_SEED)[partition_id]
    share = np.random.default_rng([PARTITION_SEED, partition_id]).permutation(share)
    index = torch.from_numpy(share)
    num_validation = int(len(index) * VALIDATION_FRACTION)
    validation, train = index[:num_validation], index[num_validation:]
    return ClientData(
        _scaled(images[train], labels[train]), _scaled(images[validation], labels[validation])
    )


def _scaled(images: torch.Tensor, labels: torch.Tensor) -> Split:
    """Pixels to [-1, 1]: the tutorials' ``Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))``."""
    return Split(images.float().div_(127.5).sub_(1.0), labels)


def train(
    net: nn.Module, data: Split, *, epochs: int, batch_size: int, lr: float, seed: int
) -> float:
    """Train in place with a fresh Adam; returns the mean loss of the last epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    net.train()
    total = 0.0
    for _ in range(epochs):
        total = 0.0
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(data.x[batch]), data.y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
    return total / len(data)


@torch.no_grad()
def test(net: nn.Module, data: Split) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``net`` on ``data``."""
    net.eval()
    logits = net(data.x)
    loss = float(nn.functional.cross_entropy(logits, data.y))
    accuracy = float((logits.argmax(1) == data.y).float().mean())
    return loss, accuracy


def shuffle_seed(seed: int, partition_id: int, server_round: int) -> int:
    """The seed of one client's shuffling in one round: fixed, and different for each pair."""
    return seed * 1_000_000 + server_round * 1_000 + partition_id


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config this app reads (``[tool.pollinate.app.config]`` plus overrides)."""

    data_dir: str
    num_server_rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    threads: int

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Read and convert every key, naming the key when one is missing or malformed."""
        return cls(
            data_dir=_get(config, "data-dir", str),
            num_server_rounds=_get(config, "num-server-rounds", int),
            local_epochs=_get(config, "local-epochs", int),
            batch_size=_get(config, "batch-size", int),
            learning_rate=_get(config, "learning-rate", float),
            seed=_get(config, "seed", int),
            threads=_get(config, "threads", int),
        )

    def apply_threads(self) -> None:
        """Use ``threads`` torch threads in this process (0 keeps torch's default)."""
        if self.threads > 0 and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


T = TypeVar("T", str, int, float)


def _get(config: Mapping[str, object], key: str, kind: type[T]) -> T:
    if key not in config:
        raise ConfigError(f"run config has no {key!r}: add it under [tool.pollinate.app.config]")
    value = config[key]
    ok = {
        str: isinstance(value, str),
        int: isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer(),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
    }[kind]
    if not ok:
        raise ConfigError(f"run config {key!r} must be a {kind.__name__}, got {value!r}")
    return kind(value)
