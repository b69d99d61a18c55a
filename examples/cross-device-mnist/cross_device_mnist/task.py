"""Workload W2 (cross-device-mnist) of WORKLOADS.md: data, sampling, model and training, exactly.

Everything here matches ``floor_cross_device.py`` step for step (the same Dirichlet split,
the same one sampling generator for the whole run, the same shuffling seeds, model and SGD),
so a federated run can be compared with that plain loop as a ratio. Data is read, normalised
and split once per process and kept as tensors: a round costs only its training.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pollinate.datasets import read_idx
from pollinate.errors import ConfigError

MEAN, STD = 0.1307, 0.3081
ROUND_SEED_STRIDE = 1_000_003
"""A client's shuffling seed in round ``r`` is ``r * ROUND_SEED_STRIDE + partition_id``."""
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
    """Normalised images (float32, N x 784) and labels (int64, N)."""

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
        return self.out(torch.relu(self.fc(x)))


def initial_model() -> Net:
    """The model every run starts from: torch's default init after ``manual_seed(0)``."""
    torch.manual_seed(0)
    return Net()


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
    """One MNIST split, normalised as the floor does: ``(x / 255 - 0.1307) / 0.3081``."""
    folder = check_data_dir(data_dir)
    images, labels = (read_idx(folder / file) for file in FILES[name])
    x = torch.from_numpy(images.astype(np.float32)).view(len(images), -1)
    x.div_(255.0).sub_(MEAN).div_(STD)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


@functools.lru_cache(maxsize=1)
def load_test(data_dir: str) -> Split:
    """The 10,000 test images, read once per process."""
    return _read_split(data_dir, "test")


def dirichlet_partition(
    labels: NDArray[np.int64], num_clients: int, alpha: float, seed: int
) -> list[NDArray[np.int64]]:
    """W2's label split: each client's sorted indices into the training set.

    Per class in order: shuffle its indices, draw ``p ~ Dir(alpha * 1_N)``, cut at
    ``floor(cumsum(p) * n_c)``; one ``default_rng(seed)`` for all classes (the floor's rule,
    which differs from ``pollinate.datasets.partition.dirichlet``). A client may get nothing.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[NDArray[np.int64]]] = [[] for _ in range(num_clients)]
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        p = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
        for i, chunk in enumerate(np.split(idx, cuts)):
            if len(chunk):
                parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]


@functools.lru_cache(maxsize=2)
def load_partitions(data_dir: str, num_clients: int, alpha: float, seed: int) -> tuple[Split, ...]:
    """Every client's training data, read and split once per process.

    Each client's examples are copied out once; the full set is freed after the split.
    """
    train = _read_split(data_dir, "train")
    parts = dirichlet_partition(train.y.numpy(), num_clients, alpha, seed)
    return tuple(Split(train.x[idx], train.y[idx]) for idx in map(torch.from_numpy, parts))


class RoundSampler:
    """The floor's sampling: round ``r`` takes the ``r``-th draw of one ``default_rng(seed)``.

    Each draw is ``rng.choice(num_nodes, per_round, replace=False)``, in the order drawn.
    The generator is kept between rounds; any other round (a resumed run) replays the draws.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._drawn = 0
        self._num_nodes = 0

    def sample(self, server_round: int, num_nodes: int, per_round: int) -> list[int]:
        """The indices (0-based, into the sorted nodes) that train in ``server_round``."""
        if server_round != self._drawn + 1 or num_nodes != self._num_nodes:
            self._rng, self._drawn, self._num_nodes = np.random.default_rng(self.seed), 0, num_nodes
        while True:
            chosen = self._rng.choice(num_nodes, per_round, replace=False)
            self._drawn += 1
            if self._drawn >= server_round:
                return [int(i) for i in chosen]


def train(
    net: nn.Module,
    data: Split,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str = "cpu",
) -> None:
    """Local training, the floor's loop: plain SGD, shuffled by a generator seeded ``seed``.

    ``net`` is on ``device``; the node's data goes there once (the shuffle stays on the CPU,
    so the order is the floor's on any device).
    """
    if len(data) == 0:
        return
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    x, y = data.x.to(device), data.y.to(device)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = perm[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            optimizer.step()


@torch.no_grad()
def scores(net: nn.Module, data: Split) -> dict[str, float]:
    """Loss and accuracy on ``data``."""
    logits = net(data.x)
    return {
        "loss": float(nn.functional.cross_entropy(logits, data.y)),
        "accuracy": float((logits.argmax(1) == data.y).float().mean()),
    }


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config this app reads (``[tool.pollinate.app.config]`` plus overrides)."""

    data_dir: str
    num_server_rounds: int
    nodes_per_round: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    alpha: float
    seed: int
    threads: int

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Read and convert every key, naming the key when one is missing or malformed."""
        settings = cls(
            data_dir=_get(config, "data-dir", str),
            num_server_rounds=_get(config, "num-server-rounds", int),
            nodes_per_round=_get(config, "nodes-per-round", int),
            local_epochs=_get(config, "local-epochs", int),
            batch_size=_get(config, "batch-size", int),
            learning_rate=_get(config, "learning-rate", float),
            alpha=_get(config, "alpha", float),
            seed=_get(config, "seed", int),
            threads=_get(config, "threads", int),
        )
        for key, value in (
            ("num-server-rounds", settings.num_server_rounds),
            ("nodes-per-round", settings.nodes_per_round),
            ("batch-size", settings.batch_size),
        ):
            if value < 1:
                raise ConfigError(f"run config {key!r} must be 1 or more, got {value}")
        if not settings.alpha > 0:
            raise ConfigError(f"run config 'alpha' must be above 0, got {settings.alpha}")
        return settings

    def apply_threads(self) -> None:
        """Use ``threads`` torch threads in this process (0 keeps torch's default).

        The default is 1: for a model this small a second thread costs more in waiting than
        it saves (WORKLOADS.md measured the floor at 2.9 s with 1 thread, 3.8 s with 2).
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
