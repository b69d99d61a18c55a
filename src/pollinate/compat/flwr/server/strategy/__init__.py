"""Flower's ``flwr.server.strategy``: ``Strategy``, ``FedAvg`` and the strategies pollinate has.

Maps: each class keeps Flower's parameter names and defaults and holds the pollinate
strategy of the same algorithm (``.core``), which samples the nodes and aggregates; the
abstract ``Strategy`` runs on pollinate's round loop (see ``.strategy``). Flower's DP
wrappers run the wrapped strategy with ``pollinate.privacy``'s pieces (see ``._dp``).
Flower strategies pollinate has no counterpart for raise one error naming the nearest
pollinate tool.
"""

from __future__ import annotations

from typing import NoReturn

from .....errors import ConfigError
from ..._dp import CLIENT_SIDE_ADAPTIVE
from ..._missing import unsupported
from ._dp import (
    DifferentialPrivacyClientSideFixedClipping as DifferentialPrivacyClientSideFixedClipping,
)
from ._dp import (
    DifferentialPrivacyServerSideAdaptiveClipping as DifferentialPrivacyServerSideAdaptiveClipping,
)
from ._dp import (
    DifferentialPrivacyServerSideFixedClipping as DifferentialPrivacyServerSideFixedClipping,
)
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
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
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

_OLD_DP = (
    "use DifferentialPrivacyServerSideFixedClipping or "
    "DifferentialPrivacyServerSideAdaptiveClipping, which replaced it in Flower"
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
    "DPFedAvgAdaptive": _OLD_DP,
    "DPFedAvgFixed": _OLD_DP,
    "DifferentialPrivacyClientSideAdaptiveClipping": CLIENT_SIDE_ADAPTIVE,
}


def __getattr__(name: str) -> NoReturn:
    """Flower's strategies pollinate does not map: one error naming what to use instead."""
    if name in _UNMAPPED:
        raise ConfigError(f"Flower's {name} is not supported on pollinate: {_UNMAPPED[name]}")
    raise unsupported(
        "pollinate.compat.flwr.server.strategy", name, "pollinate.strategy has the native ones"
    )
