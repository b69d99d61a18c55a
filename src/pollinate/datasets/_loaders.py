"""The bundled digits loader, the name -> loader registry, and ``load`` that looks names up."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._cifar import load_cifar10
from ._csv import load_csv
from ._dataset import Dataset, split_indices
from ._idx import load_fashion_mnist, load_mnist
from ._images import load_image_folder


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0-16 as uint8): no download.

    The default dataset: small enough for tests and first runs, split by a seeded permutation.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise ConfigError(
            "the digits dataset needs scikit-learn: pip install scikit-learn"
        ) from exc
    bunch = sklearn_digits()
    x = bunch.images.astype(np.uint8)
    y = bunch.target.astype(np.int64)
    train, test = split_indices(len(y), test_fraction, seed)
    return Dataset("digits", x[train], y[train], x[test], y[test], tuple(map(str, range(10))))


LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": load_cifar10,
    "csv": load_csv,
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "image-folder": load_image_folder,
    "mnist": load_mnist,
}
"""Every dataset ``load`` knows, by name; each value's signature lists its options."""


def load(name: str = "digits", /, *args: Any, **options: Any) -> Dataset:
    """The dataset called ``name``, its loader given ``args`` and ``options`` unchanged.

    ``load("mnist", data_dir="~/data/mnist", download=False)`` is ``load_mnist(...)``.
    """
    loader = LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    signature = inspect.signature(loader)
    try:
        signature.bind(*args, **options)
    except TypeError as err:  # checked before the call: a TypeError inside stays what it is
        accepted = ", ".join(signature.parameters)
        raise ConfigError(f"dataset {name!r}: {err}; its loader takes: {accepted}") from None
    return loader(*args, **options)
