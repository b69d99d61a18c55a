"""Quantity skew: partition sizes that grow linearly, quadratically or exponentially."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ...errors import ConfigError
from ._common import Parts, check_int, check_partitions, from_sequences

SizeKind = Literal["linear", "square", "exponential"]
_WEIGHTS = {
    "linear": lambda p: p + 1.0,
    "square": lambda p: (p + 1.0) ** 2,
    "exponential": lambda p: np.exp(p - p[-1]),
}


def skewed_sizes(num_items: int, num_partitions: int, kind: SizeKind) -> NDArray[np.int64]:
    """Ascending partition sizes that sum to ``num_items``, at least one each.

    The rest is shared in proportion to ``p+1``, ``(p+1)**2`` or ``e**p`` (Flower's weights).
    """
    if kind not in _WEIGHTS:
        raise ConfigError(f"kind must be one of {sorted(_WEIGHTS)}, got {kind!r}")
    weights = _WEIGHTS[kind](np.arange(num_partitions, dtype=np.float64))
    spare = num_items - num_partitions
    cuts = np.floor(np.cumsum(weights) / weights.sum() * spare).astype(np.int64)
    cuts[-1] = spare
    return np.sort(np.diff(cuts, prepend=0)) + 1


def size_skew(
    num_items: int, num_partitions: int, *, kind: SizeKind = "linear", seed: int = 0
) -> Parts:
    """Random items into partitions whose sizes grow with the partition id (non-decreasing).

    Quantity skew as in Li et al. 2022 ("Federated learning on non-IID data silos").
    """
    num_items = check_int("num_items", num_items, minimum=1, fix="pass a count > 0")
    num_partitions = check_partitions(num_partitions, num_items)
    sizes = skewed_sizes(num_items, num_partitions, kind)
    order = np.random.default_rng(seed).permutation(num_items)
    return from_sequences(order, np.concatenate([[0], np.cumsum(sizes)]))
