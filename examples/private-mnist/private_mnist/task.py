"""Data, model and training: W1's skew (each device misses its silo's three digits), small.

Device ``p`` belongs to silo ``p % 3`` and never sees that silo's digits, W1's
``EXCLUDED[p % 3]``. The data is scikit-learn's bundled 8x8 digits unless ``data-dir``
names a folder of MNIST's IDX files (``pollinate.datasets``, no download).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pollinate.datasets import load
from pollinate.errors import ConfigError

EXCLUDED: tuple[tuple[int, ...], ...] = ((1, 3, 7), (2, 5, 8), (4, 6, 9))
"""The digits the devices of silo ``s`` never see: ``EXCLUDED[s]``."""


@dataclass(frozen=True, slots=True)
class Split:
    """Flattened pixels scaled to [0, 1] (float32) and labels (int64)."""

    x: torch.Tensor
    y: torch.Tensor


@functools.lru_cache(maxsize=2)
def load_data(data_dir: str) -> tuple[Split, Split]:
    """The train and test sets: the bundled digits, or MNIST from ``data_dir``."""
    data = load("mnist", data_dir, download=False) if data_dir else load("digits")
    scale = 16.0 if data.name == "digits" else 255.0

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        flat = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / scale)
        return Split(flat, torch.from_numpy(y))

    return split(data.x_train, data.y_train), split(data.x_test, data.y_test)


@functools.lru_cache(maxsize=1024)
def load_partition(data_dir: str, partition_id: int, num_partitions: int) -> Split:
    """Device ``partition_id``'s equal shard of the shuffled train set, less its silo's digits."""
    train, _ = load_data(data_dir)
    order = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(42))
    bounds = [p * len(order) // num_partitions for p in (partition_id, partition_id + 1)]
    shard = order[bounds[0] : bounds[1]]
    shard = shard[~torch.isin(train.y[shard], torch.tensor(EXCLUDED[partition_id % 3]))]
    return Split(train.x[shard], train.y[shard])


def make_model(inputs: int, hidden: int) -> nn.Module:
    """An ``inputs``-``hidden``-10 perceptron, seeded: every run starts from the same one."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def train(
    model: nn.Module, data: Split, *, epochs: int, batch_size: int, lr: float, seed: int
) -> None:
    """Plain SGD on the device's few examples (the update is clipped after, by the mod)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(data.y), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(data.x[batch]), data.y[batch]).backward()
            optimizer.step()


@torch.no_grad()
def scores(model: nn.Module, data: Split) -> dict[str, float]:
    """Accuracy overall and on each silo's missing digits (what only the federation teaches)."""
    correct = model(data.x).argmax(1) == data.y
    out = {"accuracy": float(correct.float().mean())}
    for digits in EXCLUDED:
        mask = torch.isin(data.y, torch.tensor(digits))
        out["accuracy-missing-" + "-".join(map(str, digits))] = float(correct[mask].float().mean())
    return out


@dataclass(frozen=True, slots=True)
class Settings:
    """The run config this app reads (``[tool.pollinate.app.config]`` plus overrides)."""

    data_dir: str
    num_server_rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    hidden: int
    fraction_train: float
    clip_norm: float
    noise_multiplier: float
    delta: float
    server_momentum: float
    num_shares: int
    reconstruction_threshold: int
    seed: int
    threads: int

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Settings:
        """Every field from its dashed key, or one ConfigError naming the key."""
        kinds = {"str": str, "int": int, "float": float}
        values = {}
        for name, kind in cls.__annotations__.items():
            key = name.replace("_", "-")
            value = config.get(key)
            ok = isinstance(value, str) if kind == "str" else _is_number(value, kind == "int")
            if not ok:
                raise ConfigError(f"run config {key!r} must be a {kind}, got {value!r}")
            values[name] = kinds[kind](value)
        return cls(**values)


def _is_number(value: object, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return float(value).is_integer() or not whole
