"""``flwr.serverapp.strategy``: Flower's message-API strategies on pollinate's round loop.

``Strategy`` (subclass it the Flower way: ``aggregate_train(server_round, replies) ->
(arrays, metrics)``, ``super()`` included), ``Result``, ``FedAvg`` and the strategies
pollinate has too: ``FedProx``, ``FedAvgM``, ``FedAdam``, ``FedYogi``, ``FedAdagrad``,
``FedMedian``, ``FedTrimmedAvg``, ``Krum``, ``MultiKrum``, ``Bulyan``, ``QFedAvg``,
``FedXgbBagging``; each builds
the pollinate strategy of the same name and delegates to it. Flower's DP wrappers
(``DifferentialPrivacyServerSideFixedClipping`` and its relatives) run the wrapped strategy
with ``pollinate.privacy``'s pieces. ``strategy_utils`` has
Flower's aggregation helpers for custom strategies, on pollinate's kernels.
"""

from ._dp import (
    DifferentialPrivacyClientSideFixedClipping as DifferentialPrivacyClientSideFixedClipping,
)
from ._dp import (
    DifferentialPrivacyServerSideAdaptiveClipping as DifferentialPrivacyServerSideAdaptiveClipping,
)
from ._dp import (
    DifferentialPrivacyServerSideFixedClipping as DifferentialPrivacyServerSideFixedClipping,
)
from ._fedavg import Bulyan as Bulyan
from ._fedavg import FedAdagrad as FedAdagrad
from ._fedavg import FedAdam as FedAdam
from ._fedavg import FedAvg as FedAvg
from ._fedavg import FedAvgM as FedAvgM
from ._fedavg import FedMedian as FedMedian
from ._fedavg import FedProx as FedProx
from ._fedavg import FedTrimmedAvg as FedTrimmedAvg
from ._fedavg import FedXgbBagging as FedXgbBagging
from ._fedavg import FedYogi as FedYogi
from ._fedavg import Krum as Krum
from ._fedavg import MultiKrum as MultiKrum
from ._fedavg import QFedAvg as QFedAvg
from ._strategy import Result as Result
from ._strategy import Strategy as Strategy

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
    "FedXgbBagging",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "QFedAvg",
    "Result",
    "Strategy",
]


def __getattr__(name: str) -> object:
    """Name a Flower strategy pollinate lacks (XGBoost cyclic, client-side adaptive DP)."""
    from ..._dp import CLIENT_SIDE_ADAPTIVE
    from ..._missing import unsupported

    if name == "DifferentialPrivacyClientSideAdaptiveClipping":
        raise unsupported(__name__, name, CLIENT_SIDE_ADAPTIVE)
    raise unsupported(
        __name__,
        name,
        "pollinate has "
        + ", ".join(n for n in __all__ if n not in ("Result", "Strategy") and "Privacy" not in n)
        + "; for other rules compose pollinate.strategy.chain(...)",
    )
