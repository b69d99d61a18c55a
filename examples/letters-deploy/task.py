"""What server.py and client.py share: the model, reading an image folder, train and test.

The model is a 64-64-10 multilayer perceptron written in numpy (the forward pass, its
gradient and SGD with momentum fit on one screen), so a client needs no deep learning
framework and starts in a fraction of a second; its weights are the plain list of numpy
arrays a NumPyClient exchanges.

Images are read with ``pollinate.datasets.load_image_folder`` as 8x8 grayscale and scaled to
[0, 1]. ``classes=CLASSES`` keeps the labels the same on every client, although each
client's folder lacks some classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pollinate import ArrayRecord
from pollinate.datasets import load_image_folder

CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
"""Every class the model knows, by folder name: output ``i`` of the model is ``CLASSES[i]``."""
IMAGE_SIZE = (8, 8)
"""(height, width): images of another size are resized to it."""
HIDDEN = 64
WEIGHT_NAMES = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")
"""The names the weights travel and are saved under, in the order of ``Weights``."""

Floats = npt.NDArray[np.float32]
Weights = list[Floats]
"""``[hidden.weight (64 x 64), hidden.bias (64), out.weight (64 x 10), out.bias (10)]``."""


@dataclass(frozen=True, slots=True)
class Split:
    """Images (float32, N x 64, in [0, 1]) and their labels (int64, indices into CLASSES)."""

    x: Floats
    y: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.y)


def init_weights(seed: int) -> Weights:
    """Fresh weights (He initialisation, zero biases); the same seed gives the same ones."""
    rng = np.random.default_rng(seed)
    inputs = IMAGE_SIZE[0] * IMAGE_SIZE[1]
    return [
        (rng.standard_normal((inputs, HIDDEN)) * np.sqrt(2 / inputs)).astype(np.float32),
        np.zeros(HIDDEN, np.float32),
        (rng.standard_normal((HIDDEN, len(CLASSES))) * np.sqrt(2 / HIDDEN)).astype(np.float32),
        np.zeros(len(CLASSES), np.float32),
    ]


def named(weights: Sequence[npt.NDArray[Any]]) -> ArrayRecord:
    """The weights as an ArrayRecord under ``WEIGHT_NAMES`` (what saved models are keyed by)."""
    return ArrayRecord(zip(WEIGHT_NAMES, weights, strict=True))


def load_folder(path: str | Path, validation_split: float = 0.0) -> tuple[Split, Split]:
    """The images under ``path/<class>/``: (train, held-out), a seeded ``validation_split``."""
    dataset = load_image_folder(
        path,
        color_mode="grayscale",
        image_size=IMAGE_SIZE,
        validation_split=validation_split,
        classes=CLASSES,
    )
    return _split(dataset.x_train, dataset.y_train), _split(dataset.x_test, dataset.y_test)


def _split(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]) -> Split:
    """Pixels flattened and scaled to [0, 1]."""
    pixels = images.reshape(len(images), IMAGE_SIZE[0] * IMAGE_SIZE[1])
    return Split((pixels / 255.0).astype(np.float32), labels)


def class_names(data: Split) -> list[str]:
    """The classes present in ``data``, in CLASSES order."""
    return [CLASSES[i] for i in sorted(set(data.y.tolist()))]


def _forward(weights: Sequence[npt.NDArray[Any]], x: Floats) -> tuple[Floats, Floats]:
    """The hidden activations and the class probabilities (softmax) for a batch."""
    w1, b1, w2, b2 = weights
    hidden = np.maximum(x @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return hidden, exp / exp.sum(axis=1, keepdims=True)


def _cross_entropy(probs: Floats, y: npt.NDArray[np.int64]) -> float:
    return float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())


def train(
    weights: Sequence[npt.NDArray[Any]],
    data: Split,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[Weights, float]:
    """SGD with momentum 0.9 from ``weights``: (new weights, mean loss of the last epoch)."""
    new = [np.array(w, dtype=np.float32) for w in weights]  # received arrays are read-only
    velocity = [np.zeros_like(w) for w in new]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(epochs):
        total = 0.0
        order = rng.permutation(len(data))
        for start in range(0, len(data), batch_size):
            batch = order[start : start + batch_size]
            x, y = data.x[batch], data.y[batch]
            hidden, probs = _forward(new, x)
            total += _cross_entropy(probs, y) * len(batch)
            d_logits = probs
            d_logits[np.arange(len(y)), y] -= 1
            d_logits /= len(y)
            d_hidden = (d_logits @ new[2].T) * (hidden > 0)
            grads = [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logits, d_logits.sum(0)]
            for w, v, g in zip(new, velocity, grads, strict=True):
                v *= 0.9
                v += g
                w -= lr * v
    return new, total / len(data)


def test(weights: Sequence[npt.NDArray[Any]], data: Split) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of the model on ``data``."""
    _, probs = _forward(weights, data.x)
    return _cross_entropy(probs, data.y), float((probs.argmax(axis=1) == data.y).mean())
