"""Aggregation kernels: a streaming weighted mean of arrays, and metric averaging."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np

from ..records import Array, ArrayRecord, MetricRecord, MetricValue

__all__ = ["MetricsAggregationFn", "WeightedSum", "weighted_mean"]

MetricsAggregationFn: TypeAlias = Callable[[Sequence[MetricRecord], str], MetricRecord]
"""``(metric records, weight key) -> one MetricRecord``."""


class WeightedSum:
    """A running weighted sum of ArrayRecords: O(model) memory however many replies come.

    Sums in float64 (complex128 for complex arrays) and casts the mean back to each array's
    own dtype; integer arrays are rounded, boolean arrays take the weighted majority.
    """

    def __init__(self) -> None:
        self._sums: dict[str, np.ndarray[Any, Any]] = {}
        self._dtypes: dict[str, np.dtype[Any]] = {}
        self.total_weight = 0.0
        self.count = 0

    def add(self, arrays: ArrayRecord, weight: float) -> None:
        """Fold ``weight * arrays`` into the sum."""
        w = np.float64(weight)
        for name, array in arrays.items():
            data = array.numpy()
            if name not in self._sums:
                self._dtypes[name] = data.dtype
                kind = np.complex128 if data.dtype.kind == "c" else np.float64
                self._sums[name] = np.zeros(data.shape, dtype=kind)
            _accumulate(self._sums[name].reshape(-1), data.reshape(-1), w)
        self.total_weight += float(weight)
        self.count += 1

    def mean(self) -> ArrayRecord | None:
        """The weighted mean, or None if nothing was added."""
        if self.count == 0:
            return None
        scale = np.float64(1.0 / self.total_weight)
        return ArrayRecord(
            (name, Array(_scaled(total, scale, self._dtypes[name])))
            for name, total in self._sums.items()
        )


CHUNK = 1 << 18
"""Elements folded per step: the temporaries stay in cache instead of growing with the model."""


def _accumulate(total: np.ndarray[Any, Any], data: np.ndarray[Any, Any], w: np.float64) -> None:
    """``total += w * data``, chunk by chunk, in ``total``'s precision."""
    for start in range(0, data.size, CHUNK):
        stop = start + CHUNK
        total[start:stop] += w * data[start:stop]


def all_finite(data: np.ndarray[Any, Any]) -> bool:
    """True if no element is NaN or infinite (checked in chunks, without a model-sized mask)."""
    if data.dtype.kind not in "fc":
        return True
    flat = data.reshape(-1)
    return all(bool(np.isfinite(flat[i : i + CHUNK]).all()) for i in range(0, flat.size, CHUNK))


def _scaled(
    total: np.ndarray[Any, Any], scale: np.float64, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """``total * scale`` cast to ``dtype``, chunk by chunk."""
    out = np.empty(total.shape, dtype=dtype)
    flat_out, flat_total = out.reshape(-1), total.reshape(-1)
    for start in range(0, flat_total.size, CHUNK):
        stop = start + CHUNK
        flat_out[start:stop] = _cast(flat_total[start:stop] * scale, dtype)
    return out


def _cast(mean: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any]
    if dtype.kind == "b":
        out = mean >= 0.5
    elif dtype.kind in "iu":
        out = np.rint(mean).astype(dtype)
    else:
        out = mean.astype(dtype)
    return out


def weighted_mean(records: Sequence[MetricRecord], weight_key: str) -> MetricRecord:
    """Average every metric over the records that have it, weighted by ``weight_key``.

    The weight itself is summed (the total number of examples); lists are averaged element
    by element when all have the same length, else left out.
    """
    out = MetricRecord()
    if not records:
        return out
    weights = [_weight(r, weight_key) for r in records]
    keys = list(dict.fromkeys(k for r in records for k in r))
    for key in keys:
        pairs = [(r[key], w) for r, w in zip(records, weights, strict=True) if key in r]
        if key == weight_key:
            out[key] = _sum_weights([v for v, _ in pairs])
            continue
        value = _weighted(pairs)
        if value is not None:
            out[key] = value
    return out


def _weight(record: MetricRecord, weight_key: str) -> float:
    value = record.get(weight_key, 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _sum_weights(values: list[MetricValue]) -> int | float:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return sum(numbers) if all(isinstance(v, int) for v in numbers) else float(sum(numbers))


def _weighted(pairs: list[tuple[MetricValue, float]]) -> MetricValue | None:
    total = sum(w for _, w in pairs)
    if total <= 0:
        return None
    numbers = [(v, w) for v, w in pairs if isinstance(v, (int, float))]
    if len(numbers) == len(pairs):
        return sum(float(v) * w for v, w in numbers) / total
    lists = [v for v, _ in pairs if isinstance(v, list)]
    if len(lists) == len(pairs) and len({len(v) for v in lists}) == 1:
        stacked = np.asarray(lists, dtype=np.float64)
        weights = np.asarray([w for _, w in pairs], dtype=np.float64)
        return [float(x) for x in weights @ stacked / total]
    return None
