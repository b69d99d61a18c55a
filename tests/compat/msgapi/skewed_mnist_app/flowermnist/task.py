"""flowermnist: the model, the skewed split of the data, training and scoring.

Client ``p`` gets a seeded shard of the training images without the digits
``EXCLUDED[p % 3]``; ``scores`` reports accuracy overall and on each excluded subset.
"""

import functools

import numpy as np
import torch
from torch import nn

from pollinate.datasets import load_digits, load_mnist

EXCLUDED = ((1, 3, 7), (2, 5, 8), (4, 6, 9))
PARTITION_SEED = 42


class Net(nn.Module):
    """Two fully connected layers: pixels -> 128 -> 10."""

    def __init__(self, pixels: int):
        super().__init__()
        self.fc = nn.Linear(pixels, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x.flatten(1))))


@functools.lru_cache(maxsize=2)
def load(dataset: str, data_dir: str):
    """Normalised train and test tensors: (x_train, y_train, x_test, y_test)."""
    if dataset == "mnist":
        data, scale = load_mnist(data_dir, download=False), 255.0
    else:
        data, scale = load_digits(), 16.0
    x_train = torch.from_numpy(data.x_train.astype(np.float32) / scale)
    mean, std = x_train.mean(), x_train.std()
    x_test = torch.from_numpy(data.x_test.astype(np.float32) / scale)
    return (
        (x_train - mean) / std,
        torch.from_numpy(data.y_train),
        (x_test - mean) / std,
        torch.from_numpy(data.y_test),
    )


def pixels(dataset: str, data_dir: str) -> int:
    """The number of pixels of one image."""
    return int(np.prod(load(dataset, data_dir)[0].shape[1:]))


def partition(dataset: str, data_dir: str, partition_id: int, num_partitions: int):
    """Client ``partition_id``'s training data: a seeded shard without its excluded digits."""
    x, y, _, _ = load(dataset, data_dir)
    generator = torch.Generator().manual_seed(PARTITION_SEED)
    order = torch.randperm(len(y), generator=generator)
    shard = order[
        partition_id * len(y) // num_partitions : (partition_id + 1) * len(y) // num_partitions
    ]
    excluded = torch.tensor(EXCLUDED[partition_id % len(EXCLUDED)])
    shard = shard[~torch.isin(y[shard], excluded)]
    return x[shard], y[shard]


def train(net, x, y, epochs: int, batch_size: int, lr: float, momentum: float, seed: int):
    """SGD for ``epochs`` epochs, shuffled by a generator seeded ``seed``; the mean loss."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    total, steps = 0.0, 0
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


@torch.no_grad()
def scores(net, x, y) -> dict:
    """Loss and accuracy on ``x, y``, and accuracy on each client's excluded digits."""
    net.eval()
    logits = net(x)
    correct = logits.argmax(1) == y
    out = {
        "loss": float(nn.functional.cross_entropy(logits, y)),
        "accuracy": float(correct.float().mean()),
    }
    for digits in EXCLUDED:
        mask = torch.isin(y, torch.tensor(digits))
        out["accuracy-" + "".join(map(str, digits))] = float(correct[mask].float().mean())
    return out
