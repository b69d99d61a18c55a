"""A small VectorizedClient for the vectorized backend's tests: nodes hold 0 to 52 examples."""

import torch
from torch import nn

from pollinate.simulation.vectorized import SGD, VectorizedClient


class Net(nn.Module):
    """Linear-ReLU-Linear, W2's shape at a test's size."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


class TanhNet(Net):
    """Net with tanh: not a Linear-ReLU chain, so the vectorized backend trains it with vmap."""

    def forward(self, x):
        return self.out(torch.tanh(self.fc(x)))


def node_data(context):
    """Node n's examples: (n - 1) * 7 % 53 of them (node 1 has none), fixed by its id."""
    count = (context.node_id - 1) * 7 % 53
    generator = torch.Generator().manual_seed(context.node_id)
    x = torch.randn(count, 20, generator=generator)
    y = torch.randint(0, 4, (count,), generator=generator)
    return x, y


def partition_data(context):
    """Partition p's examples, 5 + 9 * p of them: the same wherever the node runs."""
    partition = int(context.node_config["partition-id"])
    generator = torch.Generator().manual_seed(1000 + partition)
    count = 5 + 9 * partition
    x = torch.randn(count, 20, generator=generator)
    return x, torch.randint(0, 4, (count,), generator=generator)


def declaration(optimizer, epochs=1, model=Net):
    """``model`` on node_data with batch size 8 (so most nodes end an epoch on a short batch)."""
    return VectorizedClient(model, node_data, optimizer, batch_size=8, epochs=epochs)


by_partition = VectorizedClient(Net, partition_data, SGD(lr=0.05), batch_size=8).client_app()
"""A VectorizedClient's app whose data follows partition-id, for a deployed run."""

app = declaration(SGD(lr=0.05, momentum=0.5)).client_app()
"""A VectorizedClient's app by import string ('vectorized_apps:app'), for the process backend."""
