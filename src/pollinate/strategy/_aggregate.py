"""Aggregation kernels: a streaming weighted mean of arrays, and metric averaging."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from ..records import Array, ArrayRecord, MetricRecord, MetricValue

__all__ = ["MetricsAggregationFn", "WeightedSum", "cast_to", "weighted_mean"]

log = logging.getLogger("pollinate.strategy")

MetricsAggregationFn: TypeAlias = Callable[
    [Sequence[MetricRecord], str], "MetricRecord | Mapping[str, Any]"
]
"""``(metric records, weight key) -> one MetricRecord`` (or a plain dict of metrics)."""

WORST_CASE_KEYS = frozenset({"privacy.node-epsilon", "privacy.node-delta"})
"""Metrics aggregated as their maximum: the worst node bounds a privacy guarantee."""


class WeightedSum:
    """A running weighted sum of ArrayRecords shaped like ``template``: O(model) memory.

    Sums in float64 (complex128 for complex arrays) and casts the mean back to each array's
    own dtype, in the template's order; integer arrays are rounded, boolean arrays take the
    weighted majority. Weights are taken relative to the first one, so huge or tiny weights
    (1e308, 5e-324) cannot overflow the total.
    """

    def __init__(self, template: ArrayRecord) -> None:
        self._dtypes = {name: a.dtype for name, a in template.items()}
        self._sums = {
            name: np.zeros(a.shape, np.complex128 if a.dtype.kind == "c" else np.float64)
            for name, a in template.items()
        }
        self._base_weight = 0.0
        self._relative_total = 0.0
        self.count = 0

    def add(self, arrays: ArrayRecord, weight: float) -> None:
        """Fold ``weight * arrays`` into the sum (``arrays`` must match the template)."""
        if self.count == 0:
            self._base_weight = float(weight)
        relative = np.float64(float(weight) / self._base_weight)
        for name, total in self._sums.items():
            _accumulate(total.reshape(-1), arrays[name].numpy().reshape(-1), relative)
        self._relative_total += float(relative)
        self.count += 1

    @property
    def total_weight(self) -> float:
        """The sum of the weights added so far."""
        return self._relative_total * self._base_weight

    def mean(self) -> ArrayRecord | None:
        """The weighted mean, or None if nothing was added."""
        if self.count == 0:
            return None
        total = np.float64(self._relative_total)
        return ArrayRecord(
            (name, Array(_divided(sums, total, self._dtypes[name])))
            for name, sums in self._sums.items()
        )


CHUNK = 1 << 18
"""Elements folded per step: the temporaries stay in cache instead of growing with the model."""


def _accumulate(total: np.ndarray[Any, Any], data: np.ndarray[Any, Any], w: np.float64) -> None:
    """``total += w * data``, chunk by chunk, in ``total``'s precision (on NumPy 1 and 2)."""
    if data.size <= CHUNK:
        total += np.multiply(data, w, dtype=total.dtype)
        return
    for start in range(0, data.size, CHUNK):
        stop = start + CHUNK
        total[start:stop] += np.multiply(data[start:stop], w, dtype=total.dtype)


def all_finite(data: np.ndarray[Any, Any]) -> bool:
    """True if no element is NaN or infinite (checked in chunks, without a model-sized mask)."""
    if data.dtype.kind not in "fc":
        return True
    if data.size <= CHUNK:
        return bool(np.isfinite(data).all())
    flat = data.reshape(-1)
    return all(bool(np.isfinite(flat[i : i + CHUNK]).all()) for i in range(0, flat.size, CHUNK))


def _divided(
    sums: np.ndarray[Any, Any], total: np.float64, dtype: np.dtype[Any]
) -> np.ndarray[Any, Any]:
    """``sums / total`` cast to ``dtype``, chunk by chunk."""
    out = np.empty(sums.shape, dtype=dtype)
    flat_out, flat_sums = out.reshape(-1), sums.reshape(-1)
    floating = dtype.kind in "fc"
    for start in range(0, flat_sums.size, CHUNK):
        stop = start + CHUNK
        mean = flat_sums[start:stop] / total
        flat_out[start:stop] = mean if floating else cast_to(mean, dtype)
    return out


def cast_to(data: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """An aggregate (float64 or complex128) back in an array's own dtype.

    Integers are rounded, booleans take the majority (>= 0.5), complex values drop to their
    real part where the dtype is real.
    """
    out: np.ndarray[Any, Any]
    if dtype.kind == "b":
        out = data.real >= 0.5
    elif dtype.kind in "iu":
        out = np.rint(data.real).astype(dtype)
    else:
        out = data.astype(dtype)
    return out


def weighted_mean(records: Sequence[MetricRecord], weight_key: str) -> MetricRecord:
    """Average every metric over the records that have it, weighted by ``weight_key``.

    The weight itself is summed (the total number of examples), and the nodes' own privacy
    (``WORST_CASE_KEYS``) takes its maximum, since the worst node bounds the guarantee;
    lists are averaged element by element when all have the same length, else left out.
    Sums are scaled by powers of two, so huge values (1e308) cannot overflow them; an
    aggregate that is still not finite is left out with a logged reason, never inf or NaN.
    """
    out = MetricRecord()
    if not records:
        return out
    weights = [_weight(r, weight_key) for r in records]
    keys = list(dict.fromkeys(k for r in records for k in r))
    for key in keys:
        pairs = [(r[key], w) for r, w in zip(records, weights, strict=True) if key in r]
        value, kind = _aggregate(key, pairs, weight_key)
        if value is not None and not _all_finite(value):
            log.warning("metric %r is left out of the aggregate: the %s is not finite", key, kind)
        elif value is not None:
            out[key] = value
    return out


def _aggregate(
    key: str, pairs: list[tuple[MetricValue, float]], weight_key: str
) -> tuple[MetricValue | None, str]:
    """One metric's aggregate over ``(value, weight)`` pairs, and what kind it is."""
    values = [v for v, _ in pairs]
    if key == weight_key:
        return _sum_weights(values), "sum"
    if key in WORST_CASE_KEYS:
        numbers = [float(v) for v in values if isinstance(v, (int, float))]
        return (max(numbers) if len(numbers) == len(values) else None), "maximum"
    return _weighted(pairs), "weighted mean"


def _weight(record: MetricRecord, weight_key: str) -> float:
    value = record.get(weight_key, 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _sum_weights(values: list[MetricValue]) -> int | float:
    numbers = [v for v in values if isinstance(v, (int, float))]
    total = sum(numbers)
    if all(isinstance(v, int) for v in numbers) and -(2**63) <= total < 2**63:
        return total
    return float(total)  # floats, or ints beyond what a MetricRecord holds


def _weighted(pairs: list[tuple[MetricValue, float]]) -> MetricValue | None:
    weights = np.asarray([w for _, w in pairs], dtype=np.float64)
    if all(isinstance(v, (int, float)) for v, _ in pairs):
        values = np.asarray([float(v) for v, _ in pairs], dtype=np.float64)  # type: ignore[arg-type]
        mean = _scaled_mean(values, weights)
        return None if mean is None else float(mean)
    lists = [v for v, _ in pairs if isinstance(v, list)]
    if len(lists) == len(pairs) and len({len(v) for v in lists}) == 1:
        mean = _scaled_mean(np.asarray(lists, dtype=np.float64), weights)
        return None if mean is None else [float(x) for x in mean]
    return None


def _scaled_mean(values: np.ndarray[Any, Any], weights: np.ndarray[Any, Any]) -> Any:
    """``weights @ values / weights.sum()``, both scaled below 1 by powers of two first.

    None if the weights sum to nothing. Scaling by a power of two is exact, so ordinary
    metrics get the same bits as the plain formula, while no product or partial sum can
    overflow on the way to a finite mean. The mean itself may still round past the largest
    float: the caller checks.
    """
    scaled_weights = np.ldexp(weights, -int(np.frexp(weights.max())[1]))
    total = scaled_weights.sum()
    if not total > 0:
        return None
    value_exp = int(np.frexp(np.abs(values).max())[1]) if values.size else 0
    with np.errstate(over="ignore"):
        return np.ldexp(scaled_weights @ np.ldexp(values, -value_exp) / total, value_exp)


def _all_finite(value: MetricValue) -> bool:
    return all(math.isfinite(v) for v in (value if isinstance(value, list) else [value]))
