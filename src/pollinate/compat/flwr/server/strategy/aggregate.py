"""Flower's ``flwr.server.strategy.aggregate`` helpers, on pollinate's aggregation kernels.

Custom strategies call ``aggregate(results)`` for the example-weighted mean of the models and
``weighted_loss_avg(results)`` for the loss; both run on ``pollinate.strategy``'s
``WeightedSum`` and ``weighted_mean``, as the built-in strategies do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .....errors import ConfigError
from .....records import ArrayRecord, MetricRecord
from .....strategy import WeightedSum, weighted_mean
from ...common.typing import NDArrays

__all__ = ["aggregate", "weighted_loss_avg"]


def aggregate(results: Sequence[tuple[NDArrays, int]]) -> NDArrays:
    """The mean of ``[(arrays, num_examples), ...]`` weighted by examples, as new arrays."""
    if not results:
        raise ConfigError("aggregate: no results to average (check the failures)")
    total = WeightedSum(ArrayRecord.from_numpy(results[0][0]))
    for arrays, num_examples in results:
        total.add(ArrayRecord.from_numpy(arrays), num_examples)
    mean = total.mean()
    assert mean is not None  # results is not empty
    return [np.array(a) for a in mean.to_numpy()]


def weighted_loss_avg(results: Sequence[tuple[int, float]]) -> float:
    """The mean of ``[(num_examples, loss), ...]`` weighted by examples."""
    if not results:
        raise ConfigError("weighted_loss_avg: no results to average (check the failures)")
    records = [MetricRecord({"n": n, "loss": float(loss)}) for n, loss in results]
    loss = weighted_mean(records, "n")["loss"]
    assert isinstance(loss, float)  # a mean of floats
    return loss
