"""Model, data and settings for uneven-devices: a small MLP on scikit-learn's 8x8 digits.

The digits ship with scikit-learn, so nothing is downloaded. A stratified quarter is held out
for the server's centralized evaluation; the rest is split over the nodes by a Dirichlet(0.5)
label skew (``pollinate.datasets.partition.dirichlet``): each node holds a dozen or so
examples, most of them of a few digits, as a phone in a cross-device federation would.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from pollinate import Context
from pollinate.datasets.partition import dirichlet
from pollinate.errors import ConfigError

STRATEGIES = ("fedavg", "fedavg-deadline", "fedbuff", "fedasync")
"""The strategies the ``strategy`` key chooses from."""

TEST_FRACTION = 0.25
DATA_SEED = 0
DIRICHLET_ALPHA = 0.5
MIN_PARTITION_SIZE = 5


@dataclass(frozen=True, slots=True)
class Split:
    """Features (float32, scaled to [0, 1]) and labels (int64) of one set of examples."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


class Net(nn.Module):
    """A 64-64-10 multilayer perceptron: small enough to train in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


def make_model(seed: int) -> Net:
    """A freshly initialised model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    return Net()


@functools.lru_cache(maxsize=1)
def load_split() -> tuple[Split, Split]:
    """The training pool and the held-out test set (stratified, fixed seed), loaded once."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data / 16.0,
        digits.target,
        test_size=TEST_FRACTION,
        stratify=digits.target,
        random_state=DATA_SEED,
    )
    return _split(x_train, y_train), _split(x_test, y_test)


def _split(x: object, y: object) -> Split:
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))


@functools.cache
def partitions(num_partitions: int) -> tuple[np.ndarray, ...]:
    """Each partition's indices into the training pool: a self-balancing Dirichlet(0.5) split.

    Self-balancing keeps sizes near the mean (5 to 26 examples with 100 partitions), so that
    every node has at least ``MIN_PARTITION_SIZE`` examples.
    """
    pool, _ = load_split()
    return tuple(
        dirichlet(
            pool.y.numpy(),
            num_partitions,
            alpha=DIRICHLET_ALPHA,
            min_partition_size=MIN_PARTITION_SIZE,
            self_balancing=True,
            seed=DATA_SEED,
        )
    )


def load_partition(partition_id: int, num_partitions: int) -> Split:
    """Partition ``partition_id``'s training examples."""
    if not 0 <= partition_id < num_partitions:
        raise ConfigError(
            f"partition-id {partition_id} is outside 0..{num_partitions - 1}: "
            "give each node a partition-id below num-partitions"
        )
    pool, _ = load_split()
    index = torch.as_tensor(partitions(num_partitions)[partition_id])
    return Split(pool.x[index], pool.y[index])


def node_data(context: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """This node's training examples as (x, y), on the node's device (``VectorizedClient``)."""
    apply_threads(context.run_config)
    device = str(context.node_config.get("device", "cpu"))
    data = load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )
    return data.x.to(device), data.y.to(device)


@torch.no_grad()
def test(model: nn.Module, data: Split) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``."""
    model.eval()
    logits = model(data.x)
    loss = float(nn.functional.cross_entropy(logits, data.y))
    accuracy = float((logits.argmax(1) == data.y).float().mean())
    return loss, accuracy


def apply_threads(config: Mapping[str, object]) -> None:
    """Use the ``threads`` key's number of torch threads here (0 keeps torch's default).

    A model this small trains fastest on one thread: more only add synchronisation.
    """
    threads = _get(config, "threads", int)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config the ServerApp reads (``[tool.pollinate.app.config]`` plus overrides)."""

    strategy: str
    num_server_rounds: int
    num_versions: int
    fraction_train: float
    over_selection: float
    round_deadline_s: float
    buffer_size: int
    concurrency: int
    fedasync_alpha: float
    learning_rate: float
    seed: int

    @property
    def num_models(self) -> int:
        """The strategy's ``num_rounds``: rounds for FedAvg, model versions for the others."""
        return (
            self.num_versions
            if self.strategy in ("fedbuff", "fedasync")
            else self.num_server_rounds
        )

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Read and convert every key, naming the key when one is missing or malformed."""
        strategy = config.get("strategy")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"run config 'strategy' must be one of {', '.join(STRATEGIES)}, got "
                f"{strategy!r}: e.g. --run-config strategy=fedbuff"
            )
        return cls(
            strategy=str(strategy),
            num_server_rounds=_get(config, "num-server-rounds", int),
            num_versions=_get(config, "num-versions", int),
            fraction_train=_get(config, "fraction-train", float),
            over_selection=_get(config, "over-selection", float),
            round_deadline_s=_get(config, "round-deadline-s", float),
            buffer_size=_get(config, "buffer-size", int),
            concurrency=_get(config, "concurrency", int),
            fedasync_alpha=_get(config, "fedasync-alpha", float),
            learning_rate=_get(config, "learning-rate", float),
            seed=_get(config, "seed", int),
        )


T = TypeVar("T", int, float)


def _get(config: Mapping[str, object], key: str, kind: type[T]) -> T:
    if key not in config:
        raise ConfigError(f"run config has no {key!r}: add it under [tool.pollinate.app.config]")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"run config {key!r} must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"run config {key!r} must be a whole number, got {value!r}")
    return kind(value)
