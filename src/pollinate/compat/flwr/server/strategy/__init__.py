"""Flower's ``flwr.server.strategy``: ``Strategy``, ``FedAvg`` and the strategies pollinate has.

Maps: each class keeps Flower's parameter names and defaults and holds the pollinate
strategy of the same algorithm (``.core``), which samples the nodes and aggregates; the
abstract ``Strategy`` runs on pollinate's round loop (see ``.strategy``). Flower strategies
pollinate has no counterpart for raise one error naming the nearest pollinate tool.
"""

from __future__ import annotations

from typing import NoReturn

from .....errors import ConfigError
from ..._missing import unsupported
from ._presets import Bulyan as Bulyan
from ._presets import FedAdagrad as FedAdagrad
from ._presets import FedAdam as FedAdam
from ._presets import FedAvgM as FedAvgM
from ._presets import FedMedian as FedMedian
from ._presets import FedProx as FedProx
from ._presets import FedTrimmedAvg as FedTrimmedAvg
from ._presets import FedYogi as FedYogi
from ._presets import Krum as Krum
from ._presets import QFedAvg as QFedAvg
from .fedavg import FedAvg as FedAvg
from .strategy import Strategy as Strategy

__all__ = [
    "Bulyan",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Krum",
    "QFedAvg",
    "Strategy",
]

_DP = (
    "differential privacy is not built in: clip with pollinate.strategy.norm_bound(...) in "
    "FedAvg(aggregation=chain(...)) and add noise in a ClientApp mod"
)
_UNMAPPED = {
    "FedOpt": "use FedAdagrad, FedAdam or FedYogi (FedOpt is their base class)",
    "FaultTolerantFedAvg": (
        "use FedAvg(accept_failures=True): pollinate sets bad replies aside and goes on"
    ),
    "FedAvgAndroid": "use FedAvg (pollinate has no Android client)",
    "FedXgbBagging": "use pollinate.strategy.FedXgbBagging with the native API (ServerApp)",
    "FedXgbCyclic": "pollinate has no cyclic XGBoost strategy; see its FedXgbBagging",
    "FedXgbNnAvg": "pollinate has no XGBoost+NN strategy; see pollinate.strategy.FedXgbBagging",
    "DPFedAvgAdaptive": _DP,
    "DPFedAvgFixed": _DP,
    "DifferentialPrivacyClientSideAdaptiveClipping": _DP,
    "DifferentialPrivacyClientSideFixedClipping": _DP,
    "DifferentialPrivacyServerSideAdaptiveClipping": _DP,
    "DifferentialPrivacyServerSideFixedClipping": _DP,
}


def __getattr__(name: str) -> NoReturn:
    """Flower's strategies pollinate does not map: one error naming what to use instead."""
    if name in _UNMAPPED:
        raise ConfigError(f"Flower's {name} is not supported on pollinate: {_UNMAPPED[name]}")
    raise unsupported(
        "pollinate.compat.flwr.server.strategy", name, "pollinate.strategy has the native ones"
    )
