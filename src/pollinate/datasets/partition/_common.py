"""Checks and the assembly step every partitioner shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ConfigError

Parts = list[NDArray[np.int64]]
"""One sorted int64 array of item indices per partition."""


def as_labels(labels: ArrayLike, name: str = "labels") -> NDArray[Any]:
    """``labels`` as a non-empty 1-D array, or a ConfigError naming the parameter."""
    array = np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(
            f"{name} must be a non-empty 1-D array (one entry per item), got shape {array.shape}"
        )
    return array


def encode(labels: NDArray[Any]) -> tuple[NDArray[np.int64], int]:
    """Class codes 0..K-1 in sorted-label order, and K."""
    classes, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1).astype(np.int64, copy=False), len(classes)


def check_int(name: str, value: int, *, minimum: int, fix: str) -> int:
    """``value`` as an int of at least ``minimum``, or a ConfigError naming ``name`` and ``fix``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}; {fix}")
    return int(value)


def check_partitions(num_partitions: int, num_items: int) -> int:
    """``num_partitions`` between 1 and ``num_items``, or a ConfigError saying which to change."""
    check_int("num_partitions", num_partitions, minimum=1, fix="ask for at least one partition")
    if num_partitions > num_items:
        raise ConfigError(
            f"num_partitions={num_partitions} is more than the {num_items} items to split; "
            "use fewer partitions or more data"
        )
    return int(num_partitions)


def by_class(codes: NDArray[np.int64], num_classes: int) -> list[NDArray[np.int64]]:
    """The indices of each class, in index order (one stable sort, no loop over items)."""
    order = np.argsort(codes.astype(np.min_scalar_type(num_classes), copy=False), kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=num_classes))[:-1])


def even_bounds(num_items: int, num_partitions: int) -> NDArray[np.int64]:
    """Cut points ``p * n // P`` for p = 0..P: the equal contiguous split W1 uses."""
    return np.arange(num_partitions + 1, dtype=np.int64) * num_items // num_partitions


def assemble(assign: NDArray[np.int64], num_partitions: int) -> Parts:
    """Group item indices by partition id (``-1`` = dropped); each group comes out sorted."""
    shifted = (assign + 1).astype(np.min_scalar_type(num_partitions), copy=False)
    order = np.argsort(shifted, kind="stable")  # a radix sort for up to 65,535 partitions
    counts = np.bincount(shifted, minlength=num_partitions + 1)
    groups = np.split(order.astype(np.int64, copy=False), np.cumsum(counts)[:-1])
    return groups[1:]


def from_sequences(order: NDArray[np.int64], bounds: Sequence[int] | NDArray[np.int64]) -> Parts:
    """Partition p takes ``order[bounds[p]:bounds[p+1]]``; the rest is dropped. Sorted per part."""
    bounds = np.asarray(bounds, dtype=np.int64)
    num_partitions = len(bounds) - 1
    assign = np.full(len(order), -1, dtype=np.int64)
    sizes = np.diff(bounds)
    assign[order[bounds[0] : bounds[-1]]] = np.repeat(np.arange(num_partitions), sizes)
    return assemble(assign, num_partitions)
