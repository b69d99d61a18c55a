"""Strategies: the round loop, FedAvg and its relatives, and the pieces they are made of.

Named strategies are thin presets over composable pieces, with the same parameter names:
``FedAdam(eta=0.01)`` is ``FedAvg(aggregation=chain(server_adam(eta=0.01)))``, and new
combinations need no new class:
``FedAvg(aggregation=chain(norm_bound(5.0), trimmed_mean(0.1), server_adam(eta=0.01)))``.
What a strategy keeps between rounds is a value (``init_state``, then each round's
``aggregate_train`` returns the next), as are its server optimizers' states.
"""

from ._aggregate import MetricsAggregationFn as MetricsAggregationFn
from ._aggregate import WeightedSum as WeightedSum
from ._aggregate import weighted_mean as weighted_mean
from ._base import EvaluateFn as EvaluateFn
from ._base import RoundConfig as RoundConfig
from ._base import Strategy as Strategy
from ._base import one_server_app as one_server_app
from ._base import streams_replies as streams_replies
from ._compose import Aggregation as Aggregation
from ._compose import Aggregator as Aggregator
from ._compose import RoundInfo as RoundInfo
from ._compose import ServerOptimizer as ServerOptimizer
from ._compose import Update as Update
from ._compose import UpdateFilter as UpdateFilter
from ._compose import chain as chain
from ._compose import weighted_average as weighted_average
from ._fedavg import FedAvg as FedAvg
from ._fedavg import FedAvgOptions as FedAvgOptions
from ._fedbuff import AsyncOptions as AsyncOptions
from ._fedbuff import FedAsync as FedAsync
from ._fedbuff import FedBuff as FedBuff
from ._fedbuff import Staleness as Staleness
from ._fedbuff import constant as constant
from ._fedbuff import hinge as hinge
from ._fedbuff import polynomial as polynomial
from ._fedopt import FedAdagrad as FedAdagrad
from ._fedopt import FedAdam as FedAdam
from ._fedopt import FedAvgM as FedAvgM
from ._fedopt import FedYogi as FedYogi
from ._fedopt import server_adagrad as server_adagrad
from ._fedopt import server_adam as server_adam
from ._fedopt import server_momentum as server_momentum
from ._fedopt import server_yogi as server_yogi
from ._fedprox import FedProx as FedProx
from ._fedprox import proximal_term as proximal_term
from ._qfedavg import QFedAvg as QFedAvg
from ._qfedavg import qfedavg as qfedavg
from ._robust import Bulyan as Bulyan
from ._robust import FedMedian as FedMedian
from ._robust import FedTrimmedAvg as FedTrimmedAvg
from ._robust import Krum as Krum
from ._robust import MultiKrum as MultiKrum
from ._robust import bulyan as bulyan
from ._robust import krum as krum
from ._robust import median as median
from ._robust import multi_krum as multi_krum
from ._robust import norm_bound as norm_bound
from ._robust import trimmed_mean as trimmed_mean
from ._scaffold import Scaffold as Scaffold
from ._scaffold import ScaffoldClient as ScaffoldClient
from ._secure import SecureAggregation as SecureAggregation
from ._secure import SecureRound as SecureRound
from ._xgb import FedXgbBagging as FedXgbBagging
from ._xgb import xgb_booster as xgb_booster
from ._xgb import xgb_new_trees as xgb_new_trees
from ._xgb import xgb_record as xgb_record

__all__ = [
    "Aggregation",
    "Aggregator",
    "AsyncOptions",
    "Bulyan",
    "EvaluateFn",
    "FedAdagrad",
    "FedAdam",
    "FedAsync",
    "FedAvg",
    "FedAvgM",
    "FedAvgOptions",
    "FedBuff",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedYogi",
    "Krum",
    "MetricsAggregationFn",
    "MultiKrum",
    "QFedAvg",
    "RoundConfig",
    "RoundInfo",
    "Scaffold",
    "ScaffoldClient",
    "SecureAggregation",
    "SecureRound",
    "ServerOptimizer",
    "Staleness",
    "Strategy",
    "Update",
    "UpdateFilter",
    "WeightedSum",
    "bulyan",
    "chain",
    "constant",
    "hinge",
    "krum",
    "median",
    "multi_krum",
    "norm_bound",
    "one_server_app",
    "polynomial",
    "proximal_term",
    "qfedavg",
    "server_adagrad",
    "server_adam",
    "server_momentum",
    "server_yogi",
    "streams_replies",
    "trimmed_mean",
    "weighted_average",
    "weighted_mean",
    "xgb_booster",
    "xgb_new_trees",
    "xgb_record",
]
