"""Flower's classic DP strategy wrappers: the wrapped strategy with a DP core.

``DifferentialPrivacyServerSideFixedClipping(strategy, noise_multiplier, clipping_norm,
num_sampled_clients)`` and its relatives run a copy of ``strategy`` (a FedAvg-style
strategy of this package) whose pollinate core aggregates with ``dp_fixed_clip`` or
``dp_adaptive_clip``; Flower's methods delegate to that copy, which then samples each
client independently (Poisson) and reports ``privacy.epsilon`` in the fit metrics.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from .....message import Message
from .....records import ArrayRecord
from .....strategy import Aggregator
from ..._dp import (
    adaptive_clip_piece,
    check_sample_size,
    fixed_clip_piece,
    pollinate_options,
    private_core,
)
from ...common.typing import EvaluateIns, FitIns, Parameters, Scalar
from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .fedavg import FedAvg
from .strategy import EvaluateResults, Failures, FitResults, Strategy, _Round

__all__ = [
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
]


class _PrivateStrategy(Strategy):
    """A Flower DP wrapper: Flower's six methods are those of ``self.strategy``, made private."""

    def __init__(self, strategy: Strategy, piece: Aggregator, num_sampled_clients: int) -> None:
        core = private_core(type(self).__name__, strategy, FedAvg, piece)
        assert isinstance(strategy, FedAvg)  # private_core refuses any other
        inner = copy.copy(strategy)
        inner.core, inner._round = core, None
        self.strategy: FedAvg = inner
        self.num_sampled_clients = num_sampled_clients

    @property
    def _round(self) -> _Round | None:
        """The run's round state is the wrapped strategy's, which does the work."""
        return self.strategy._round

    @_round.setter
    def _round(self, value: _Round | None) -> None:
        self.strategy._round = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strategy!r}, {self.strategy.core.aggregation!r})"

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        """The DP piece's state (the accountant's history; adaptive clipping's clip)."""
        return self.strategy.init_state(arrays)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """A Poisson sample of the clients (see ``num_sampled_clients`` in the module doc)."""
        core = self.strategy.core
        available = client_manager.num_available()
        check_sample_size(
            type(self).__name__, core.fraction_train, available, self.num_sampled_clients
        )
        return self.strategy.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: Failures
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Clipped, summed, noised by the DP core; ``privacy.*`` added to the metrics."""
        return self.strategy.aggregate_fit(server_round, results, failures)

    def configure_evaluate(  # type: ignore[override]  # Flower's signature, not pollinate's
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(  # type: ignore[override]  # Flower's signature, not pollinate's
        self, server_round: int, results: EvaluateResults, failures: Failures
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)

    def evaluates_centrally(self) -> bool:
        return self.strategy.evaluates_centrally()

    def refuse_update(self, reply: Message, arrays: ArrayRecord) -> str | None:
        return self.strategy.refuse_update(reply, arrays)


class _FixedClipping(_PrivateStrategy):
    clipped_on: Literal["server", "nodes"] = "server"

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        **pollinate: Any,
    ) -> None:
        where = type(self).__name__
        piece = fixed_clip_piece(
            where,
            noise_multiplier,
            clipping_norm,
            num_sampled_clients,
            self.clipped_on,
            **pollinate_options(where, pollinate),
        )
        super().__init__(strategy, piece, num_sampled_clients)
        self.noise_multiplier, self.clipping_norm = noise_multiplier, clipping_norm


class DifferentialPrivacyServerSideFixedClipping(_FixedClipping):
    """Central DP, the server clips each update to ``clipping_norm``: ``dp_fixed_clip``.

    pollinate's own keywords ``delta`` (the accountant's, default 1e-5) and ``seed``
    (reproducible noise and sampling; None, the default, draws from the OS) may follow.
    """


class DifferentialPrivacyClientSideFixedClipping(_FixedClipping):
    """Central DP, the clients clip (``fixedclipping_mod``): ``dp_fixed_clip(clipped_on="nodes")``.

    The clip goes to the clients in each fit config as ``dp.clip-norm``; the server adds the
    noise. pollinate's ``delta`` and ``seed`` as for the server-side wrapper.
    """

    clipped_on = "nodes"


class DifferentialPrivacyServerSideAdaptiveClipping(_PrivateStrategy):
    """Central DP whose clip tracks a quantile of the update norms: ``dp_adaptive_clip``.

    Flower's ``target_clipped_quantile``, ``clip_norm_lr`` and ``clipped_count_stddev`` are
    its ``target_quantile``, ``clip_learning_rate`` and ``count_noise_std``; pollinate's
    ``delta`` and ``seed`` as for the fixed-clipping wrappers.
    """

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        **pollinate: Any,
    ) -> None:
        where = type(self).__name__
        piece = adaptive_clip_piece(
            where,
            noise_multiplier,
            num_sampled_clients,
            initial_clipping_norm,
            target_clipped_quantile,
            clip_norm_lr,
            clipped_count_stddev,
            **pollinate_options(where, pollinate),
        )
        super().__init__(strategy, piece, num_sampled_clients)
        self.noise_multiplier = noise_multiplier
