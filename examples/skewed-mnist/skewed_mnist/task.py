"""Workload W1 (skewed-mnist) of WORKLOADS.md: data, model and local training, exactly.

Everything here matches ``floor_skewed_mnist.py`` step for step (same permutation, same
exclusions, same normalisation, same model, same optimizer and shuffling), so a federated
run can be compared with the plain loop as a ratio. Data is read and normalised once per
process and kept as tensors: later rounds cost only the training itself.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from pollinate import ArrayRecord, frameworks
from pollinate.compare import Predictions
from pollinate.datasets import read_idx
from pollinate.errors import ConfigError

EXCLUDED: tuple[tuple[int, ...], ...] = ((1, 3, 7), (2, 5, 8), (4, 6, 9))
"""The digits client ``p`` never sees: ``EXCLUDED[p % 3]``."""

PARTITION_SEED = 42
MEAN, STD = 0.1307, 0.3081
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
WHERE_TO_GET = (
    "download the four MNIST IDX .gz files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from "
    "https://ossci-datasets.s3.amazonaws.com/mnist/ (a mirror of "
    "http://yann.lecun.com/exdb/mnist/) into one folder and run with "
    "--run-config data-dir=/path/to/that/folder"
)


@dataclass(frozen=True, slots=True)
class Split:
    """Normalised images (float32, N x 28 x 28) and labels (int64, N)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


class Net(nn.Module):
    """Linear(784, 128) - ReLU - Linear(128, 10), as in the floor script."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x.view(-1, 784))))


def initial_model() -> Net:
    """The model every run starts from: torch's default init after ``manual_seed(0)``."""
    torch.manual_seed(0)
    return Net()


def excluded_digits(partition_id: int) -> tuple[int, ...]:
    """The digits a partition never sees; the 3-row table repeats for more partitions."""
    return EXCLUDED[partition_id % len(EXCLUDED)]


def missing_key(digits: tuple[int, ...]) -> str:
    """The metric name for accuracy on a missing-digit subset, e.g. ``accuracy-missing-1-3-7``."""
    return "accuracy-missing-" + "-".join(str(d) for d in digits)


def check_data_dir(data_dir: str) -> Path:
    """The MNIST folder, or an error that says which file is missing and where to get it."""
    if not data_dir:
        raise ConfigError(f"run config 'data-dir' is empty: {WHERE_TO_GET}")
    folder = Path(data_dir).expanduser()
    for name in (n for pair in FILES.values() for n in pair):
        if not (folder / name).is_file():
            raise ConfigError(f"MNIST file {folder / name} not found: {WHERE_TO_GET}")
    return folder


def _read_split(data_dir: str, name: str) -> Split:
    """One MNIST split, normalised in place: ``(x / 255 - 0.1307) / 0.3081`` in float32."""
    folder = check_data_dir(data_dir)
    images, labels = (read_idx(folder / file) for file in FILES[name])
    x = torch.from_numpy(images.astype(np.float32))
    x.div_(255.0).sub_(MEAN).div_(STD)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


@functools.lru_cache(maxsize=1)
def load_test(data_dir: str) -> Split:
    """The 10,000 test images, read once per process."""
    return _read_split(data_dir, "test")


@functools.lru_cache(maxsize=2)
def load_partitions(data_dir: str, num_partitions: int) -> tuple[Split, ...]:
    """Every client's training data, read once per process.

    The 60,000 training images are permuted with seed 42 and cut into ``num_partitions``
    equal contiguous shards (20,000 each for W1's 3); partition ``p`` drops
    ``excluded_digits(p)``. The full set is freed once the shards are cut.
    """
    train = _read_split(data_dir, "train")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(PARTITION_SEED))
    parts = []
    for p in range(num_partitions):
        idx = perm[p * len(train) // num_partitions : (p + 1) * len(train) // num_partitions]
        idx = idx[~torch.isin(train.y[idx], torch.tensor(excluded_digits(p)))]
        parts.append(Split(train.x[idx], train.y[idx]))
    return tuple(parts)


def train(
    net: nn.Module,
    data: Split,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    seed: int,
) -> None:
    """Local training, the floor's loop: fresh SGD, shuffled by a generator seeded ``seed``."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x, y = data.x, data.y
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = perm[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            optimizer.step()


@torch.no_grad()
def scores(net: nn.Module, data: Split) -> dict[str, float]:
    """Loss and accuracy overall, and accuracy on each client's missing digits."""
    logits = net(data.x)
    correct = logits.argmax(1) == data.y
    out = {
        "loss": float(nn.functional.cross_entropy(logits, data.y)),
        "accuracy": float(correct.float().mean()),
    }
    for digits in EXCLUDED:
        mask = torch.isin(data.y, torch.tensor(digits))
        out[missing_key(digits)] = float(correct[mask].float().mean())
    return out


@torch.no_grad()
def predict(arrays: ArrayRecord, run_config: Mapping[str, object]) -> Predictions:
    """The test set's labels and a model's predictions: ``pollinate compare``'s hook."""
    net = Net()
    frameworks.torch.load_arrays(net, arrays)
    test_set = load_test(_get(run_config, "data-dir", str))
    logits = net(test_set.x)
    loss = float(nn.functional.cross_entropy(logits, test_set.y))
    return Predictions(test_set.y.numpy(), logits.argmax(1).numpy(), loss=loss)


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config this app reads (``[tool.pollinate.app.config]`` plus overrides)."""

    data_dir: str
    num_server_rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    fraction_evaluate: float
    threads: int
    preload_data: bool

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Read and convert every key, naming the key when one is missing or malformed."""
        return cls(
            data_dir=_get(config, "data-dir", str),
            num_server_rounds=_get(config, "num-server-rounds", int),
            local_epochs=_get(config, "local-epochs", int),
            batch_size=_get(config, "batch-size", int),
            learning_rate=_get(config, "learning-rate", float),
            momentum=_get(config, "momentum", float),
            fraction_evaluate=_get(config, "fraction-evaluate", float),
            threads=_get(config, "threads", int),
            preload_data=_get(config, "preload-data", bool),
        )

    def apply_threads(self) -> None:
        """Use ``threads`` torch threads in this process (0 keeps torch's default).

        The app's default is 1: for a model this small torch's default (a thread per core)
        waits on its own threads and on every other busy process, and lost to one thread in
        each of 6 alternating W1 runs on 2 cores (``README.md``, *Threads*).
        """
        if self.threads > 0 and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


T = TypeVar("T", str, int, float, bool)


def _get(config: Mapping[str, object], key: str, kind: type[T]) -> T:
    if key not in config:
        raise ConfigError(f"run config has no {key!r}: add it under [tool.pollinate.app.config]")
    value = config[key]
    ok = {
        str: isinstance(value, str),
        bool: isinstance(value, bool),
        int: isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer(),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
    }[kind]
    if not ok:
        raise ConfigError(f"run config {key!r} must be a {kind.__name__}, got {value!r}")
    return kind(value)
