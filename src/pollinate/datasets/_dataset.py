"""The value every loader returns, the seeded split they share, and the torch bridge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch.utils.data import TensorDataset


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Train and test arrays of one dataset, as loaded: pixels stay uint8, labels are int64.

    ``classes[i]`` names label ``i``. Images are ``(N, H, W)`` for grayscale files stored so
    (MNIST) and ``(N, H, W, C)`` otherwise (channels last); nothing is normalised.
    """

    name: str
    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[np.int64]
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """How many classes the labels index into."""
        return len(self.classes)

    def __repr__(self) -> str:
        """Shapes and dtypes rather than the arrays themselves."""
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape} {self.x_train.dtype}, "
            f"test={self.x_test.shape} {self.x_test.dtype}, classes={len(self.classes)})"
        )


def split_indices(
    n: int, test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Train and test row indices: a seeded permutation, the last ``test_fraction`` for test."""
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test fraction must be in [0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    return np.sort(order[: n - n_test]), np.sort(order[n - n_test :])


def as_torch(x: npt.NDArray[Any], y: npt.NDArray[Any]) -> TensorDataset:
    """A ``torch.utils.data.TensorDataset`` over the arrays, sharing memory where it can.

    torch is imported here, so pollinate.datasets works without it. Read-only arrays are
    copied, since torch cannot share them.
    """
    import torch
    from torch.utils.data import TensorDataset

    def tensor(a: npt.NDArray[Any]) -> torch.Tensor:
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    return TensorDataset(tensor(x), tensor(y))
