"""Counts of each class in each partition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ConfigError
from ._common import as_labels, encode


def _class_codes(labels: ArrayLike, num_classes: int | None) -> tuple[NDArray[np.int64], int]:
    """Codes in sorted-label order, or the labels themselves when ``num_classes`` is given."""
    array = as_labels(labels)
    if num_classes is None:
        return encode(array)
    ok = np.issubdtype(array.dtype, np.integer) and array.min() >= 0
    if not ok or array.max() >= num_classes:
        raise ConfigError(
            f"with num_classes={num_classes}, labels must be integers in [0, {num_classes}); "
            "raise num_classes or leave it None to use the sorted distinct labels"
        )
    return array.astype(np.int64, copy=False), int(num_classes)


def partition_stats(
    labels: ArrayLike, parts: Sequence[ArrayLike], *, num_classes: int | None = None
) -> NDArray[np.int64]:
    """The partitions x classes matrix of item counts, to check or report a split's skew.

    Columns are the sorted distinct labels, or labels 0..num_classes-1 with ``num_classes``.
    """
    codes, width = _class_codes(labels, num_classes)
    arrays = [np.asarray(part, dtype=np.int64).reshape(-1) for part in parts]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    if not arrays:
        return np.zeros((0, width), dtype=np.int64)
    flat = np.concatenate(arrays)
    if flat.size and (flat.min() < 0 or flat.max() >= len(codes)):
        raise ConfigError(f"parts hold indices outside [0, {len(codes)}): they must index labels")
    rows = np.repeat(np.arange(len(arrays)), lengths)
    counts = np.bincount(rows * width + codes[flat], minlength=len(arrays) * width)
    return counts.reshape(len(arrays), width).astype(np.int64)
