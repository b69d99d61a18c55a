"""Label exclusion: an equal random split in which partition p never holds given labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ConfigError
from ._common import Parts, as_labels, assemble, check_partitions, even_bounds


def _check_order(order: ArrayLike, num_items: int) -> NDArray[np.int64]:
    """``order`` as a permutation of ``range(num_items)``, or a ConfigError."""
    array = np.asarray(order)
    ok = array.shape == (num_items,) and np.issubdtype(array.dtype, np.integer)
    if ok and not (array.min() >= 0 and array.max() < num_items):
        ok = False
    if not ok or np.bincount(array, minlength=num_items).max() != 1:
        raise ConfigError(
            f"order must be a permutation of range({num_items}) (every index once), "
            "e.g. np.random.default_rng(seed).permutation(len(labels)); or leave it None"
        )
    return array.astype(np.int64, copy=False)


def _excluded_mask(
    labels: NDArray[Any], excluded: Sequence[Sequence[Any]]
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """A partitions x classes mask of excluded labels, and each item's class code."""
    classes, codes = np.unique(labels, return_inverse=True)
    mask = np.zeros((len(excluded), len(classes)), dtype=bool)
    for p, drop in enumerate(excluded):
        names = np.asarray(list(drop))
        present = np.isin(names, classes)
        if not present.all():
            raise ConfigError(
                f"excluded[{p}] names labels {names[~present].tolist()} that do not occur in "
                f"labels (present: {classes.tolist()[:20]}); remove them or fix the label values"
            )
        mask[p, np.searchsorted(classes, names)] = True
    return mask, codes.reshape(-1).astype(np.int64)


def label_exclusion(
    labels: ArrayLike,
    excluded: Sequence[Sequence[Any]],
    *,
    seed: int = 0,
    order: ArrayLike | None = None,
) -> Parts:
    """An equal split of ``order`` in which partition p never holds the labels ``excluded[p]``.

    Partition p takes ``order[p*n//P : (p+1)*n//P]`` (``order`` defaults to a seeded
    permutation) minus its excluded labels: the skewed-MNIST setup (workload W1).
    Pass W1's own permutation as ``order`` to get exactly its index sets.
    """
    array = as_labels(labels)
    if isinstance(excluded, (str, bytes)) or len(excluded) == 0:
        raise ConfigError(
            "excluded must hold one sequence of labels per partition, e.g. [[1], [2]]"
        )
    num_partitions = check_partitions(len(excluded), len(array))
    if order is None:
        base = np.random.default_rng(seed).permutation(len(array))
    else:
        base = _check_order(order, len(array))
    mask, codes = _excluded_mask(array, excluded)
    bounds = even_bounds(len(array), num_partitions)
    assign = np.empty(len(array), dtype=np.int64)
    assign[base] = np.repeat(np.arange(num_partitions), np.diff(bounds))
    assign[mask[assign, codes]] = -1
    return assemble(assign, num_partitions)
