"""Label skew by Dirichlet draws (Hsu et al. 2019), and its inner variant with fixed sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ConfigError
from ._common import Parts, as_labels, assemble, by_class, check_int, check_partitions, encode


def check_alpha(alpha: float) -> float:
    """A finite alpha > 0, or a ConfigError: the Dirichlet needs a positive concentration."""
    if not np.isfinite(alpha) or alpha <= 0:
        raise ConfigError(
            f"alpha must be a finite number > 0, got {alpha!r}; small (0.1) is very skewed, "
            "large (100) is close to IID"
        )
    return float(alpha)


def _one_attempt(
    classes: list[NDArray[np.int64]],
    num_items: int,
    num_partitions: int,
    alpha: float,
    self_balancing: bool,
    rng: np.random.Generator,
) -> NDArray[np.int64]:
    """One draw: per class, Dirichlet shares for all partitions, cut at cumulative counts."""
    assign = np.empty(num_items, dtype=np.int64)
    sizes = np.zeros(num_partitions, dtype=np.int64)
    ids = np.arange(num_partitions, dtype=np.int64)
    for members in classes:
        share = rng.dirichlet(np.full(num_partitions, alpha))
        if self_balancing:
            below = sizes < num_items / num_partitions
            share = np.where(below, share, 0.0)
            share = share / share.sum() if share.sum() > 0 else below / below.sum()
        cuts = np.floor(np.cumsum(share) * len(members) + rng.random()).astype(np.int64)
        cuts = np.minimum(cuts, len(members))  # a random offset: rounding favours no partition
        cuts[-1] = len(members)
        counts = np.diff(cuts, prepend=0)
        assign[rng.permutation(members)] = np.repeat(ids, counts)
        sizes += counts
    return assign


def dirichlet(
    labels: ArrayLike,
    num_partitions: int,
    *,
    alpha: float,
    min_partition_size: int = 10,
    self_balancing: bool = False,
    seed: int = 0,
    max_retries: int = 10,
) -> Parts:
    """Split each class over partitions by Dirichlet(alpha) shares (Hsu et al. 2019).

    Redraws until every partition holds ``min_partition_size`` items; ``self_balancing`` stops
    giving a class to partitions already above the average size (as Flower's partitioner does).
    """
    array = as_labels(labels)
    num_partitions = check_partitions(num_partitions, len(array))
    alpha = check_alpha(alpha)
    min_size = check_int("min_partition_size", min_partition_size, minimum=0, fix="use 0 or more")
    check_int("max_retries", max_retries, minimum=1, fix="allow at least one attempt")
    if min_size * num_partitions > len(array):
        raise ConfigError(
            f"min_partition_size={min_size} x num_partitions={num_partitions} is more than the "
            f"{len(array)} items; lower min_partition_size or num_partitions"
        )
    codes, num_classes = encode(array)
    classes = by_class(codes, num_classes)
    rng = np.random.default_rng(seed)
    smallest = 0
    for _ in range(max_retries):
        assign = _one_attempt(classes, len(array), num_partitions, alpha, self_balancing, rng)
        smallest = int(np.bincount(assign, minlength=num_partitions).min())
        if smallest >= min_size:
            return assemble(assign, num_partitions)
    raise ConfigError(
        f"dirichlet: no draw in max_retries={max_retries} gave every partition at least "
        f"min_partition_size={min_size} items (last smallest: {smallest}); raise alpha "
        f"(now {alpha}), lower min_partition_size or num_partitions, or raise max_retries"
    )


def _class_counts(
    props: NDArray[np.float64], size: int, left: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """``size`` draws from class shares ``props``, moving overflow to classes with items left."""
    counts = np.minimum(rng.multinomial(size, props), left)
    while (missing := size - int(counts.sum())) > 0:
        room = left - counts
        weights = np.where(room > 0, props, 0.0)
        weights = weights / weights.sum() if weights.sum() > 0 else (room > 0) / (room > 0).sum()
        counts = np.minimum(counts + rng.multinomial(missing, weights), left)
    return counts


def inner_dirichlet(
    labels: ArrayLike, partition_sizes: Sequence[int], *, alpha: float, seed: int = 0
) -> Parts:
    """Partitions of the given sizes, each with Dirichlet(alpha) class shares.

    Size skew and label skew set apart (Flower's InnerDirichletPartitioner, after Hsu et al.
    2019); a class that runs out passes its share to the classes that still have items.
    """
    array = as_labels(labels)
    sizes = _check_sizes(partition_sizes, len(array))
    alpha = check_alpha(alpha)
    codes, num_classes = encode(array)
    classes = by_class(codes, num_classes)
    rng = np.random.default_rng(seed)
    left = np.array([len(members) for members in classes], dtype=np.int64)
    counts = np.empty((len(sizes), num_classes), dtype=np.int64)
    for p, size in enumerate(sizes):
        counts[p] = _class_counts(rng.dirichlet(np.full(num_classes, alpha)), size, left, rng)
        left -= counts[p]
    assign = np.full(len(array), -1, dtype=np.int64)
    ids = np.arange(len(sizes), dtype=np.int64)
    for k, members in enumerate(classes):
        taken = rng.permutation(members)[: counts[:, k].sum()]
        assign[taken] = np.repeat(ids, counts[:, k])
    return assemble(assign, len(sizes))


def _check_sizes(partition_sizes: Sequence[int], num_items: int) -> list[int]:
    """Positive partition sizes that sum to at most ``num_items``."""
    sizes = [
        check_int("partition_sizes[i]", s, minimum=1, fix="give every partition an item")
        for s in partition_sizes
    ]
    if not sizes:
        raise ConfigError("partition_sizes must name at least one partition size")
    if sum(sizes) > num_items:
        raise ConfigError(
            f"partition_sizes sum to {sum(sizes)}, more than the {num_items} items; "
            "make them sum to at most len(labels)"
        )
    return sizes
