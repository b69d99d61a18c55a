"""The compute floor of workload W2 (cross-device-mnist): the steps federated rounds must equal.

Adapted from ``../shared/bench/floor_cross_device.py`` (its loop, as a function the
equivalence test in test_cross_device_mnist.py calls), so that the test runs in any clone.
Keep the two in step: the test proves the example computes what this plain loop computes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's training images (normalized as W2 does, N x 784) and labels."""
    x = torch.tensor(read_idx(data_dir / "train-images-idx3-ubyte.gz"), dtype=torch.float32)
    y = torch.tensor(read_idx(data_dir / "train-labels-idx1-ubyte.gz"), dtype=torch.long)
    return ((x / 255.0 - 0.1307) / 0.3081).view(-1, 784), y


def dirichlet_partition(labels: np.ndarray, num_clients: int, alpha: float, seed: int) -> list:
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        p = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
        for i, chunk in enumerate(np.split(idx, cuts)):
            if len(chunk):
                parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x)))


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
    if len(y) == 0:
        return
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    lossf = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    for i in range(0, len(y), 32):
        idx = perm[i : i + 32]
        opt.zero_grad()
        lossf(net(x[idx]), y[idx]).backward()
        opt.step()


def fedavg(data_dir: Path, clients: int, per_round: int, rounds: int) -> dict[str, torch.Tensor]:
    """The floor's global model after ``rounds`` rounds (alpha 0.5, seed 0, 1 epoch)."""
    xtr, ytr = load(data_dir)
    parts = dirichlet_partition(ytr.numpy(), clients, 0.5, 0)
    torch.manual_seed(0)
    g = Net()
    rng = np.random.default_rng(0)
    for r in range(1, rounds + 1):
        states, ns = [], []
        for pid in rng.choice(clients, per_round, replace=False):
            idx = torch.from_numpy(parts[int(pid)])
            net = Net()
            net.load_state_dict(g.state_dict())
            train(net, xtr[idx], ytr[idx], r * 1_000_003 + int(pid))
            states.append(net.state_dict())
            ns.append(len(idx))
        tot = float(sum(ns))
        pairs = list(zip(states, ns, strict=True))
        mean = {k: sum(s[k] * (n / tot) for s, n in pairs) for k in states[0]}
        g.load_state_dict(mean)
    return g.state_dict()
