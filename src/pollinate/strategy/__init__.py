"""Strategies: the round loop, FedAvg, and the aggregation kernels they share."""

from ._aggregate import MetricsAggregationFn as MetricsAggregationFn
from ._aggregate import WeightedSum as WeightedSum
from ._aggregate import weighted_mean as weighted_mean
from ._base import EvaluateFn as EvaluateFn
from ._base import Strategy as Strategy
from ._classic import one_server_app as one_server_app
from ._fedavg import FedAvg as FedAvg

__all__ = [
    "EvaluateFn",
    "FedAvg",
    "MetricsAggregationFn",
    "Strategy",
    "WeightedSum",
    "one_server_app",
    "weighted_mean",
]
