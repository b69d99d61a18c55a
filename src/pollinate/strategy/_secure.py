"""The hook a secure aggregation protocol plugs into: a round's train exchange, summed.

A protocol such as SecAgg+ (``pollinate.privacy.SecAggPlus``) runs several Grid exchanges
in place of a round's one train exchange and gives the strategy only what it may see: the
weighted mean of the nodes' models, as ONE reply whose metrics hold the weight key (the
total weight) and ``secagg.count`` (how many nodes are in the sum). This module holds the
interface only, so the strategy layer needs no cryptography.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..message import Message
from ..records import ArrayRecord
from ..server import Failure, Grid

__all__ = ["COUNT_KEY", "SecureAggregation", "SecureRound"]

COUNT_KEY = "secagg.count"
"""The secure reply's metric: how many nodes its sum holds. Only the protocol may set it: a
node's own reply that carries it is set aside (it would be counted as that many nodes)."""


@dataclass(frozen=True, slots=True)
class SecureRound:
    """What a secure train exchange gives the round loop.

    ``reply`` is the one reply ``aggregate_train`` folds (None if nothing could be summed),
    ``count`` the nodes in its sum (reported as the round's valid replies), and
    ``failures`` the nodes left out, each with the protocol stage where it dropped.
    """

    reply: Message | None
    count: int
    failures: tuple[Failure, ...]


class SecureAggregation(ABC):
    """A protocol that sums a round's train replies so the server sees only the sum."""

    weighted: bool = True
    """False: every node weighs 1 (what a DP aggregation needs); True: the weight key's."""

    @abstractmethod
    def for_strategy(
        self, weight_key: str, weighted: bool, min_train_nodes: int
    ) -> SecureAggregation:
        """A copy bound to a strategy's weight key and weighting, checked against its rounds.

        Raises ConfigError when rounds of ``min_train_nodes`` nodes cannot run it safely.
        """

    @property
    def least_nodes(self) -> int:
        """The fewest nodes a round of this protocol can have."""
        return 1

    def check_sampling(self, available: int, rate: float, num_rounds: int) -> None:  # noqa: B027
        """ConfigError if a run's Poisson samples are likely to draw a round too small for it.

        ``available`` nodes each sampled at ``rate``, for ``num_rounds`` rounds. By default
        a protocol runs rounds of any size, so nothing is refused.
        """

    @abstractmethod
    def train_round(
        self,
        grid: Grid,
        server_round: int,
        messages: list[Message],
        arrays: ArrayRecord,
        timeout_s: float | None,
    ) -> SecureRound:
        """Run the protocol for ``messages`` (the strategy's train messages) over ``grid``.

        Raises RoundError, in one message, when the round cannot be completed (too many
        dropouts, nodes without the protocol's client mod).
        """
