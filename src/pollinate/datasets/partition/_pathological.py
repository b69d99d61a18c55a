"""Pathological label skew: each partition holds exactly k classes (McMahan et al. 2017)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ConfigError
from ._common import Parts, as_labels, assemble, by_class, check_int, check_partitions, encode


def assign_classes(
    num_partitions: int, num_classes: int, k: int, rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Which classes each partition holds (a partitions x classes mask, k per row).

    Partition p's first class is ``p % K`` (round robin); classes still uncovered go next, in
    random order, one slot at a time; remaining slots take random classes not yet in the row.
    """
    chosen = np.zeros((num_partitions, num_classes), dtype=bool)
    rows = np.arange(num_partitions)
    chosen[rows, rows % num_classes] = True
    uncovered = rng.permutation(np.arange(num_partitions, num_classes))
    uncovered = uncovered[: num_partitions * (k - 1)]
    chosen[np.arange(len(uncovered)) % num_partitions, uncovered] = True
    need = k - chosen.sum(axis=1)
    keys = np.where(chosen, np.inf, rng.random((num_partitions, num_classes)))
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    covered: NDArray[np.bool_] = chosen | (rank < need[:, None])
    return covered


def pathological(
    labels: ArrayLike, num_partitions: int, *, classes_per_partition: int, seed: int = 0
) -> Parts:
    """Each partition holds ``classes_per_partition`` classes (McMahan et al. 2017's k labels).

    A class is shuffled and split evenly among its holders. All classes are covered when
    ``num_partitions * classes_per_partition >= num_classes``; otherwise the rest are dropped.
    """
    array = as_labels(labels)
    num_partitions = check_partitions(num_partitions, len(array))
    codes, num_classes = encode(array)
    k = check_int("classes_per_partition", classes_per_partition, minimum=1, fix="use 1 or more")
    if k > num_classes:
        raise ConfigError(
            f"classes_per_partition={k} is more than the {num_classes} classes in labels; "
            f"use at most {num_classes}"
        )
    rng = np.random.default_rng(seed)
    chosen = assign_classes(num_partitions, num_classes, k, rng)
    assign = np.full(len(array), -1, dtype=np.int64)
    for c, members in enumerate(by_class(codes, num_classes)):
        holders = np.flatnonzero(chosen[:, c])
        if len(holders):
            cuts = np.arange(len(holders) + 1) * len(members) // len(holders)
            assign[rng.permutation(members)] = np.repeat(holders, np.diff(cuts))
    return assemble(assign, num_partitions)
