"""The model and data: a one-hidden-layer MLP on synthetic points, each class a cluster."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

FEATURES, CLASSES = 16, 4
CENTRES = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(99)) * 1.5


class PointMLP(nn.Module):
    """``FEATURES`` inputs -> ``hidden`` ReLU units -> ``CLASSES`` scores."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES, hidden)
        self.out = nn.Linear(hidden, CLASSES)

    def forward(self, points):
        return self.out(torch.relu(self.hidden(points)))


def _points(seed: int, count: int) -> TensorDataset:
    """``count`` labelled points drawn around the class centres (unit noise)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    points = CENTRES[labels] + torch.randn(count, FEATURES, generator=generator)
    return TensorDataset(points, labels)


def node_loaders(partition_id: int, num_partitions: int, batch_size: int):
    """This node's share of 640 training and 160 validation points, as two loaders."""
    train, val = _points(1, 640), _points(2, 160)
    train_rows = torch.arange(640).tensor_split(num_partitions)[partition_id]
    val_rows = torch.arange(160).tensor_split(num_partitions)[partition_id]
    return (
        DataLoader(Subset(train, train_rows.tolist()), batch_size=batch_size, shuffle=True),
        DataLoader(Subset(val, val_rows.tolist()), batch_size=64),
    )


def held_out_loader():
    """Points no node holds, for evaluating the global model on the server."""
    return DataLoader(_points(7, 200), batch_size=100)


def fit(model, loader, epochs: int, lr: float) -> float:
    """Plain SGD for ``epochs`` passes; the mean batch loss of the last pass."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        losses = []
        for points, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(points), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return sum(losses) / len(losses)


def score(model, loader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` over every example in ``loader``."""
    model.eval()
    total_loss, hits, seen = 0.0, 0, 0
    with torch.no_grad():
        for points, labels in loader:
            scores = model(points)
            total_loss += nn.functional.cross_entropy(scores, labels, reduction="sum").item()
            hits += int((scores.argmax(dim=1) == labels).sum())
            seen += len(labels)
    return total_loss / seen, hits / seen
