"""``flwr.serverapp.strategy.strategy_utils``: Flower's helpers for custom strategies.

``aggregate_arrayrecords`` is pollinate's ``WeightedSum`` (float64 sums, in the replies'
order) and ``aggregate_metricrecords`` its ``weighted_mean`` without the weight itself, as
Flower's leaves it out; both read each RecordDict's one ArrayRecord or MetricRecord.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .....errors import RecordError
from .....records import ArrayRecord as CoreArrayRecord
from .....records import RecordDict as CoreRecordDict
from .....strategy import WeightedSum, weighted_mean
from ..._records import ArrayRecord, MetricRecord, flower_record

__all__ = ["aggregate_arrayrecords", "aggregate_metricrecords", "log_strategy_start_info"]

log = logging.getLogger("pollinate.compat.flwr")


def aggregate_arrayrecords(
    records: Sequence[CoreRecordDict], weighting_metric_name: str
) -> ArrayRecord:
    """The weighted mean of the records' arrays, weighted by ``weighting_metric_name``."""
    if not records:
        return ArrayRecord()
    total = WeightedSum(_only(records[0].array_records, "ArrayRecord"))
    for record in records:
        weight = _only(record.metric_records, "MetricRecord")[weighting_metric_name]
        total.add(_only(record.array_records, "ArrayRecord"), float(weight))
    mean = total.mean()
    return ArrayRecord() if mean is None else flower_record(mean)


def aggregate_metricrecords(
    records: Sequence[CoreRecordDict], weighting_metric_name: str
) -> MetricRecord:
    """The weighted mean of every metric, the weight itself left out (as Flower's)."""
    metrics = [_only(record.metric_records, "MetricRecord") for record in records]
    mean = weighted_mean(metrics, weighting_metric_name)
    mean.pop(weighting_metric_name, None)
    return flower_record(mean)


def log_strategy_start_info(
    num_rounds: int,
    arrays: CoreArrayRecord,
    train_config: Mapping[str, Any] | None,
    evaluate_config: Mapping[str, Any] | None,
) -> None:
    """Log what a run starts with: rounds, model size and the configs."""
    log.info(
        "%d rounds, a model of %.2f MB, train config %s, evaluate config %s",
        num_rounds,
        arrays.nbytes / 2**20,
        dict(train_config or {}),
        dict(evaluate_config or {}),
    )


def _only(records: Mapping[str, Any], kind: str) -> Any:
    """The one record of a kind in a reply, or an error that says what is there."""
    if len(records) != 1:
        raise RecordError(
            f"expected exactly one {kind} in each reply, found {len(records)} "
            f"({', '.join(records) or 'none'})"
        )
    return next(iter(records.values()))
