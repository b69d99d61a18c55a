"""Reply checks: each returns None for a good reply, or the reason it is set aside."""

from __future__ import annotations

from collections.abc import Mapping

from ..message import ErrorCode, Message
from ..records import ArrayRecord, MetricRecord, is_finite_number
from ._aggregate import all_finite

__all__ = [
    "ARRAYS_KEY",
    "CONFIG_KEY",
    "METRICS_KEY",
    "check_arrays",
    "check_evaluate_reply",
    "check_train_reply",
]

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"


def check_train_reply(
    reply: Message, reference: ArrayRecord, weight_key: str, max_weight: float | None
) -> str | None:
    """Why a train reply cannot be aggregated with ``reference`` (None if it can)."""
    if reply.error is not None:
        return _error_reason(reply)
    arrays = reply.content.get(ARRAYS_KEY)
    if not isinstance(arrays, ArrayRecord):
        return f"reply has no ArrayRecord under {ARRAYS_KEY!r}"
    return check_arrays(arrays, reference) or _check_metrics(reply, weight_key, max_weight)


def check_evaluate_reply(reply: Message, weight_key: str, max_weight: float | None) -> str | None:
    """Why an evaluate reply cannot be aggregated (None if it can)."""
    if reply.error is not None:
        return _error_reason(reply)
    return _check_metrics(reply, weight_key, max_weight)


def _error_reason(reply: Message) -> str:
    assert reply.error is not None
    try:
        code = ErrorCode(reply.error.code).name
    except ValueError:
        code = str(reply.error.code)
    return f"error reply ({code}): {reply.error.reason}"


def check_arrays(arrays: ArrayRecord, reference: ArrayRecord) -> str | None:
    """Why ``arrays`` cannot stand in for ``reference`` (names, shapes, dtypes, NaN/Inf)."""
    if len(arrays) != len(reference) or not all(k in arrays for k in reference):
        missing = [k for k in reference if k not in arrays]
        extra = [k for k in arrays if k not in reference]
        return f"reply arrays do not match the global model: missing {missing}, extra {extra}"
    for name, expected in reference.items():
        got = arrays[name]
        if got.shape != expected.shape:
            return (
                f"reply array {name!r} has shape {got.shape}, the global model has {expected.shape}"
            )
        if got.dtype != expected.dtype:
            return (
                f"reply array {name!r} has dtype {got.dtype}, the global model has {expected.dtype}"
            )
        if not all_finite(got.numpy()):
            return f"reply array {name!r} contains NaN or infinite values"
    return None


def _check_metrics(reply: Message, weight_key: str, max_weight: float | None) -> str | None:
    metrics = reply.content.get(METRICS_KEY)
    if not isinstance(metrics, MetricRecord):
        return f"reply has no MetricRecord under {METRICS_KEY!r}"
    if weight_key not in metrics:
        return f"reply metrics have no weight {weight_key!r}"
    weight = metrics[weight_key]
    if not is_finite_number(weight) or float(weight) <= 0:  # type: ignore[arg-type]
        return f"reply weight {weight_key!r} is {weight!r}; it must be a positive finite number"
    if max_weight is not None and float(weight) > max_weight:  # type: ignore[arg-type]
        return f"reply weight {weight_key!r} is {weight!r}, above the cap max_weight={max_weight}"
    return _check_finite_metrics(metrics)


def _check_finite_metrics(metrics: Mapping[str, object]) -> str | None:
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        if not all(is_finite_number(v) for v in values):
            return f"reply metric {key!r} is {value!r}; metrics must be finite"
    return None
