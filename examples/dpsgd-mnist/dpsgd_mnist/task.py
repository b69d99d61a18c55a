"""Model, data and DP-SGD training: plain PyTorch and Opacus, nothing federated.

The data is scikit-learn's bundled 8x8 digits (1,797 images, no download) unless the run
config's ``data-dir`` names a folder with MNIST's four IDX ``.gz`` files (70,000 28x28
images). A fixed fifth of the digits, or MNIST's 10,000 test images, is the server's test
set; the rest is dealt evenly and at random (IID) to the nodes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pollinate.datasets import read_idx
from pollinate.errors import ConfigError
from pollinate.privacy import DpSgd

DATA_SEED = 42
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Opacus hooks the first layer, whose input needs no gradient; torch warns about it at every
# backward pass, though the per-example gradients are right.
warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)


@dataclass(frozen=True, slots=True)
class Split:
    """Images as float32 vectors and their labels as int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


class Net(nn.Module):
    """An MLP: ``num_inputs`` (64 for digits, 784 for MNIST) - 128 - 10."""

    def __init__(self, num_inputs: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(num_inputs, 128)
        self.output = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(x)))


def make_model(data_dir: str, seed: int) -> Net:
    """A freshly initialised model for the data ``data_dir`` chooses; same seed, same weights."""
    torch.manual_seed(seed)
    return Net(load_data(data_dir)[1].x.shape[1])


@functools.lru_cache(maxsize=1)
def load_data(data_dir: str) -> tuple[Split, Split]:
    """The nodes' pool and the server's test set, read once per process."""
    return _mnist(Path(data_dir).expanduser()) if data_dir else _digits()


def _digits() -> tuple[Split, Split]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_pool, x_test, y_pool, y_test = train_test_split(
        images / 16.0, labels, test_size=0.2, stratify=labels, random_state=DATA_SEED
    )
    return _split(x_pool, y_pool), _split(x_test, y_test)


def _mnist(folder: Path) -> tuple[Split, Split]:
    missing = [n for pair in MNIST_FILES.values() for n in pair if not (folder / n).is_file()]
    if missing:
        raise ConfigError(
            f"{folder} lacks the MNIST file(s) {', '.join(missing)}: put MNIST's four IDX .gz "
            "files there (https://ossci-datasets.s3.amazonaws.com/mnist/), or give no "
            "data-dir to use scikit-learn's digits"
        )
    splits = []
    for images, labels in MNIST_FILES.values():
        x = read_idx(folder / images).reshape(-1, 784) / 255.0
        splits.append(_split(x, read_idx(folder / labels)))
    return splits[0], splits[1]


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))


def load_partition(data_dir: str, partition_id: int, num_partitions: int) -> Split:
    """One node's training data: its share of the pool."""
    pool, _ = load_data(data_dir)
    order = np.random.default_rng(DATA_SEED).permutation(len(pool))
    mine = torch.as_tensor(np.array_split(order, num_partitions)[partition_id])
    return Split(pool.x[mine], pool.y[mine])


def train(
    model: nn.Module, data: Split, dp: DpSgd, *, epochs: int, batch_size: int, lr: float, seed: int
) -> float:
    """Train ``model`` in place with DP-SGD; returns the mean loss over the last epoch.

    ``dp`` makes the optimizer clip each example's gradient and add noise to each step, and
    the loader draw each example independently (Poisson sampling, batch sizes vary).
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.x, data.y),
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    private_model, optimizer, loader = dp.make_private(model, optimizer, loader)
    loss_fn = nn.CrossEntropyLoss()
    epoch_loss = 0.0
    for _ in range(epochs):
        epoch_loss = 0.0
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(private_model(x), y)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * len(y)
    return epoch_loss / max(len(data), 1)


@torch.no_grad()
def test(model: nn.Module, data: Split) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``."""
    logits = model(data.x)
    loss = float(nn.functional.cross_entropy(logits, data.y))
    return loss, float((logits.argmax(dim=1) == data.y).float().mean())


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config this app reads."""

    data_dir: str
    num_server_rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    max_grad_norm: float
    target_epsilon: float
    noise_multiplier: float
    delta: float
    seed: int
    threads: int

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Read every key of ``[tool.pollinate.app.config]``."""
        return cls(
            data_dir=str(config["data-dir"]),
            num_server_rounds=int(config["num-server-rounds"]),  # type: ignore[call-overload]
            local_epochs=int(config["local-epochs"]),  # type: ignore[call-overload]
            batch_size=int(config["batch-size"]),  # type: ignore[call-overload]
            learning_rate=float(config["learning-rate"]),  # type: ignore[arg-type]
            max_grad_norm=float(config["max-grad-norm"]),  # type: ignore[arg-type]
            target_epsilon=float(config["target-epsilon"]),  # type: ignore[arg-type]
            noise_multiplier=float(config["noise-multiplier"]),  # type: ignore[arg-type]
            delta=float(config["delta"]),  # type: ignore[arg-type]
            seed=int(config["seed"]),  # type: ignore[call-overload]
            threads=int(config["threads"]),  # type: ignore[call-overload]
        )

    def apply_threads(self) -> None:
        """Limit torch's threads: one is fastest for a model this small on a shared machine."""
        if self.threads > 0:
            torch.set_num_threads(self.threads)
