"""Flower's message-API DP strategy wrappers: the wrapped strategy with a DP core.

``DifferentialPrivacyServerSideFixedClipping(strategy, noise_multiplier, clipping_norm,
num_sampled_clients)`` and its relatives run a copy of ``strategy`` (a FedAvg-style
strategy of this package) whose pollinate core aggregates with ``dp_fixed_clip`` or
``dp_adaptive_clip``; every step delegates to that copy, which then Poisson-samples the
nodes and reports ``privacy.epsilon`` in the train metrics.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any, Literal

from .....message import Message as CoreMessage
from .....records import ArrayRecord as CoreArrayRecord
from .....strategy import Aggregator
from ..._dp import (
    adaptive_clip_piece,
    check_sample_size,
    fixed_clip_piece,
    pollinate_options,
    private_core,
)
from ..._records import ArrayRecord, ConfigRecord, Message, MetricRecord
from .._app import Grid
from ._fedavg import FedAvg
from ._strategy import RoundState, Strategy

__all__ = [
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
]

log = logging.getLogger("pollinate.compat.flwr")


class _PrivateStrategy(Strategy):
    """A Flower DP wrapper: each step is that of ``self.strategy``, made private."""

    def __init__(self, strategy: Strategy, piece: Aggregator, num_sampled_clients: int) -> None:
        core = private_core(type(self).__name__, strategy, FedAvg, piece)
        assert isinstance(strategy, FedAvg)  # private_core refuses any other
        inner = copy.copy(strategy)
        inner.core, inner._round = core, None
        self.strategy: FedAvg = inner
        self.num_sampled_clients = num_sampled_clients

    @property
    def _round(self) -> RoundState | None:
        """The round in progress is the wrapped strategy's, which does the work."""
        return self.strategy._round

    @_round.setter
    def _round(self, value: RoundState | None) -> None:
        self.strategy._round = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strategy!r})"

    def summary(self) -> None:
        """Log the DP settings, then the wrapped strategy's."""
        log.info("%s: %r", type(self).__name__, self.strategy.core.aggregation)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """A Poisson sample of the nodes (``num_sampled_clients``: see the module doc)."""
        available = len(grid.get_node_ids())
        fraction = self.strategy.core.fraction_train
        check_sample_size(type(self).__name__, fraction, available, self.num_sampled_clients)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clipped, summed and noised by the DP core; ``privacy.*`` in the metrics."""
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def init_state(self, arrays: CoreArrayRecord) -> CoreArrayRecord:
        return self.strategy.init_state(arrays)

    def check_train_reply(self, reply: CoreMessage, arrays: CoreArrayRecord) -> str | None:
        return self.strategy.check_train_reply(reply, arrays)

    def check_evaluate_reply(self, reply: CoreMessage) -> str | None:
        return self.strategy.check_evaluate_reply(reply)

    def streams(self, method: str) -> bool:
        return self.strategy.streams(method)

    @property
    def minimum_replies(self) -> tuple[int, int]:
        return self.strategy.minimum_replies

    def min_train_replies(self, num_sent: int) -> int:
        return self.strategy.min_train_replies(num_sent)

    def stop_reason(self, server_round: int, state: CoreArrayRecord) -> str | None:
        return self.strategy.stop_reason(server_round, state)


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
    """Central DP, the nodes clip (``fixedclipping_mod``): ``dp_fixed_clip(clipped_on="nodes")``.

    The clip goes to the nodes in each train config as ``dp.clip-norm``; the server adds
    the noise. pollinate's ``delta`` and ``seed`` as for the server-side wrapper.
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
