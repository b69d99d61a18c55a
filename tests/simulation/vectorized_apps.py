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


def declaration(optimizer, epochs=1, model=Net):
    """``model`` on node_data with batch size 8 (so most nodes end an epoch on a short batch)."""
    return VectorizedClient(model, node_data, optimizer, batch_size=8, epochs=epochs)


app = declaration(SGD(lr=0.05, momentum=0.5)).client_app()
"""A VectorizedClient's app by import string ('vectorized_apps:app'), for the process backend."""
