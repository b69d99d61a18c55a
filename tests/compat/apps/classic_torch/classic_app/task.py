"""The model and data: softmax regression in torch on three noisy clusters."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FEATURES, CLASSES = 8, 3
CENTRES = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(3)) * 2.0


def new_model() -> nn.Module:
    """Untrained softmax regression."""
    return nn.Linear(FEATURES, CLASSES)


def _clusters(seed: int, count: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    return TensorDataset(
        CENTRES[labels] + torch.randn(count, FEATURES, generator=generator), labels
    )


def node_loaders(partition_id: int) -> tuple[DataLoader, DataLoader]:
    """This node's own points: 64 to train on, 16 to validate on."""
    train = _clusters(100 + partition_id, 64)
    return DataLoader(train, batch_size=16, shuffle=True), DataLoader(_clusters(-partition_id, 16))


def central_loader() -> DataLoader:
    """Points for the server's own evaluation."""
    return DataLoader(_clusters(12345, 300), batch_size=300)


def get_weights(model: nn.Module) -> list:
    """The model's tensors as numpy arrays, in state_dict order."""
    return [tensor.detach().numpy().copy() for tensor in model.state_dict().values()]


def set_weights(model: nn.Module, arrays: list) -> None:
    """Load arrays in state_dict order (copied: what arrives may be read-only)."""
    keys = model.state_dict().keys()
    model.load_state_dict(
        {key: torch.tensor(array) for key, array in zip(keys, arrays, strict=True)}
    )


def train(model: nn.Module, loader: DataLoader, epochs: int, lr: float) -> float:
    """SGD over ``loader`` ``epochs`` times; the mean batch loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        for points, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(points), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return sum(losses) / len(losses)


def test(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over every point in ``loader``."""
    loss, hits, seen = 0.0, 0, 0
    with torch.no_grad():
        for points, labels in loader:
            scores = model(points)
            loss += nn.functional.cross_entropy(scores, labels, reduction="sum").item()
            hits += int((scores.argmax(dim=1) == labels).sum())
            seen += len(labels)
    return loss / seen, hits / seen
