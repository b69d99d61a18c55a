"""The compute floor of workload W1 (skewed-mnist): the steps a federated round must equal.

Adapted from ``../shared/bench/floor_skewed_mnist.py`` (only what the equivalence test in
test_skewed_mnist.py calls), so that the test runs in any clone. Keep the two in step: the
test proves the example computes exactly what this plain PyTorch loop computes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import nn

EXCLUDED = [[1, 3, 7], [2, 5, 8], [4, 6, 9]]


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's training images (normalized as W1 does) and labels."""
    x = torch.tensor(read_idx(data_dir / "train-images-idx3-ubyte.gz"), dtype=torch.float32)
    y = torch.tensor(read_idx(data_dir / "train-labels-idx1-ubyte.gz"), dtype=torch.long)
    return (x / 255.0 - 0.1307) / 0.3081, y


def partitions(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three shards of 20,000 shuffled examples, each without three of the digits."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(42))
    parts = []
    for p in range(3):
        idx = perm[p * 20000 : (p + 1) * 20000]
        keep = ~torch.isin(y[idx], torch.tensor(EXCLUDED[p]))
        parts.append((x[idx][keep], y[idx][keep]))
    return parts


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x.view(-1, 784))))


def train(net: Net, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()


def fedavg_round(data_dir: Path) -> dict[str, torch.Tensor]:
    """One federated round of one local epoch from seed 0: W1's first round."""
    x, y = load(data_dir)
    torch.manual_seed(0)
    glob = Net()
    states, counts = [], []
    for p, (xp, yp) in enumerate(partitions(x, y)):
        net = Net()
        net.load_state_dict(glob.state_dict())
        train(net, xp, yp, 1, seed=p)
        states.append(net.state_dict())
        counts.append(len(yp))
    total = sum(counts)
    return {
        k: sum(s[k] * n for s, n in zip(states, counts, strict=True)) / total for k in states[0]
    }
