"""Model, data and training for the quickstart: a small MLP on scikit-learn's 8x8 digits.

The digits ship with scikit-learn, so nothing is downloaded. A stratified quarter is held
out for the server's centralized evaluation; the rest is dealt to the clients so that each
one never sees three of the ten digits (the W1 pattern of WORKLOADS.md, at toy size).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from pollinate import ArrayRecord, frameworks
from pollinate.compare import Predictions
from pollinate.errors import ConfigError

EXCLUDED: tuple[tuple[int, ...], ...] = ((1, 3, 7), (2, 5, 8), (4, 6, 9))
"""The digits client ``p`` never sees: ``EXCLUDED[p % 3]``."""

TEST_FRACTION = 0.25
LOCAL_VALIDATION_FRACTION = 0.2
DATA_SEED = 0


@dataclass(frozen=True, slots=True)
class Split:
    """Features (float32, scaled to [0, 1]) and labels (int64) of one set of examples."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, slots=True)
class ClientData:
    """What one client holds: a set to train on and a set to evaluate the global model on."""

    train: Split
    validation: Split


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


def excluded_digits(partition_id: int) -> tuple[int, ...]:
    """The digits a partition never sees; the 3-row table repeats for more partitions."""
    return EXCLUDED[partition_id % len(EXCLUDED)]


def missing_key(digits: tuple[int, ...]) -> str:
    """The metric name for accuracy on a missing-digit subset, e.g. ``accuracy-missing-1-3-7``."""
    return "accuracy-missing-" + "-".join(str(d) for d in digits)


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
def load_partition(partition_id: int, num_partitions: int) -> ClientData:
    """Client ``partition_id``'s data: an equal shard of the pool without its excluded digits.

    The pool is shuffled once with a fixed seed and cut into ``num_partitions`` contiguous
    shards (as W1 cuts MNIST); the shard's excluded digits are dropped and a fixed fifth of
    what remains is kept for local (federated) evaluation.
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is outside 0..{num_partitions - 1}")
    pool, _ = load_split()
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(DATA_SEED))
    bounds = [p * len(pool) // num_partitions for p in (partition_id, partition_id + 1)]
    shard = order[bounds[0] : bounds[1]]
    shard = shard[~torch.isin(pool.y[shard], torch.tensor(excluded_digits(partition_id)))]
    num_validation = int(len(shard) * LOCAL_VALIDATION_FRACTION)
    validation, train = shard[:num_validation], shard[num_validation:]
    return ClientData(
        Split(pool.x[train], pool.y[train]), Split(pool.x[validation], pool.y[validation])
    )


def train(
    model: nn.Module, data: Split, *, epochs: int, batch_size: int, lr: float, seed: int
) -> float:
    """Train in place with SGD (momentum 0.9); returns the mean loss of the last epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    total = 0.0
    for _ in range(epochs):
        total = 0.0
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(data.x[batch]), data.y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
    return total / len(data)


@torch.no_grad()
def test(model: nn.Module, data: Split) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``."""
    model.eval()
    logits = model(data.x)
    loss = float(nn.functional.cross_entropy(logits, data.y))
    accuracy = float((logits.argmax(1) == data.y).float().mean())
    return loss, accuracy


@torch.no_grad()
def missing_digit_accuracies(model: nn.Module, data: Split) -> dict[str, float]:
    """Accuracy on each client's never-seen digits: what only federation can teach."""
    model.eval()
    predictions = model(data.x).argmax(1)
    out = {}
    for digits in EXCLUDED:
        mask = torch.isin(data.y, torch.tensor(digits))
        out[missing_key(digits)] = float((predictions[mask] == data.y[mask]).float().mean())
    return out


def predict(arrays: ArrayRecord, run_config: Mapping[str, object]) -> Predictions:
    """The held-out test set's labels and a model's predictions: ``pollinate compare``'s hook."""
    model = Net()
    frameworks.torch.load_arrays(model, arrays)
    _, test_set = load_split()
    loss, _ = test(model, test_set)
    with torch.no_grad():
        predicted = model(test_set.x).argmax(1)
    return Predictions(test_set.y.numpy(), predicted.numpy(), loss=loss)


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config this app reads (``[tool.pollinate.app.config]`` plus overrides)."""

    num_server_rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    fraction_evaluate: float
    seed: int
    threads: int

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Read and convert every key, naming the key when one is missing or malformed."""
        return cls(
            num_server_rounds=_get(config, "num-server-rounds", int),
            local_epochs=_get(config, "local-epochs", int),
            batch_size=_get(config, "batch-size", int),
            learning_rate=_get(config, "learning-rate", float),
            fraction_evaluate=_get(config, "fraction-evaluate", float),
            seed=_get(config, "seed", int),
            threads=_get(config, "threads", int),
        )

    def apply_threads(self) -> None:
        """Use ``threads`` torch threads in this process (0 keeps torch's default).

        A model this small trains fastest on one thread: more only add synchronisation.
        """
        if self.threads > 0 and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


def shuffle_seed(seed: int, partition_id: int, server_round: int) -> int:
    """The seed of one client's shuffling in one round: fixed, and different for each pair."""
    return seed * 1_000_000 + server_round * 1_000 + partition_id


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
