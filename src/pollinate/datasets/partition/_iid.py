"""IID: a uniformly random, (near) equal split."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._common import Parts, as_labels, check_int, check_partitions, even_bounds, from_sequences


def num_items_of(num_items_or_labels: int | ArrayLike) -> int:
    """The item count: the int itself, or the length of a label array."""
    if isinstance(num_items_or_labels, (int, np.integer)):
        return check_int("num_items", int(num_items_or_labels), minimum=1, fix="pass a count > 0")
    return len(as_labels(num_items_or_labels))


def iid(num_items_or_labels: int | ArrayLike, num_partitions: int, *, seed: int = 0) -> Parts:
    """Shuffle all items and cut them into equal parts (sizes differ by at most one).

    The baseline every non-IID split is compared with (McMahan et al. 2017, "IID" setting).
    """
    num_items = num_items_of(num_items_or_labels)
    num_partitions = check_partitions(num_partitions, num_items)
    order = np.random.default_rng(seed).permutation(num_items)
    return from_sequences(order, even_bounds(num_items, num_partitions))
