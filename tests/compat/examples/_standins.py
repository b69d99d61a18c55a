"""Stand-ins for what Flower's examples import beyond Flower and that this machine lacks.

``wandb`` (a logging service: its calls do nothing here), HuggingFace ``datasets``
(``load_dataset`` gives a small synthetic Fashion-MNIST-shaped test set instead of a
download) and, when it is not installed, ``torchvision.transforms`` (``ToTensor``,
``Normalize``, ``Compose``).
"""

from __future__ import annotations

import importlib.util
import types
from typing import Any

import numpy as np
import torch


class SyntheticImages:
    """A HuggingFace-style dataset of 28x28 uint8 images: the label is a bright band."""

    def __init__(self, n: int, seed: int, transform: Any = None) -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 10, n)
        images = rng.integers(0, 80, (n, 28, 28))
        for image, label in zip(images, self.labels, strict=True):
            image[2 * label : 2 * label + 6] += 150
        self.images = images.astype(np.uint8)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        batch = {"image": [self.images[i]], "label": [int(self.labels[i])]}
        if self.transform is not None:
            batch = self.transform(batch)
        return {"image": batch["image"][0], "label": batch["label"][0]}

    def with_transform(self, transform: Any) -> SyntheticImages:
        out = SyntheticImages.__new__(SyntheticImages)
        out.labels, out.images, out.transform = self.labels, self.images, transform
        return out


def _wandb() -> types.ModuleType:
    module = types.ModuleType("wandb")
    module.init = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    module.log = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    return module


def _datasets() -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = lambda name, **kwargs: {"test": SyntheticImages(200, 1234)}  # type: ignore[attr-defined]
    return module


class _ToTensor:
    def __call__(self, image: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, dtype=np.float32)[None] / 255.0)


class _Normalize:
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean[0], std[0]

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor - self.mean) / self.std


class _Compose:
    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps

    def __call__(self, value: Any) -> Any:
        for step in self.steps:
            value = step(value)
        return value


def _torchvision() -> dict[str, types.ModuleType]:
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor = _ToTensor  # type: ignore[attr-defined]
    transforms.Normalize = _Normalize  # type: ignore[attr-defined]
    transforms.Compose = _Compose  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.transforms = transforms  # type: ignore[attr-defined]
    return {"torchvision": package, "torchvision.transforms": transforms}


def modules() -> dict[str, types.ModuleType]:
    """The stand-in modules by name, for ``sys.modules`` (a real torchvision is kept)."""
    found = {"wandb": _wandb(), "datasets": _datasets()}
    if importlib.util.find_spec("torchvision") is None:
        found.update(_torchvision())
    return found
