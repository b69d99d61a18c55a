"""``SecAggPlus``: secure aggregation as a strategy's train exchange (server side)."""

from __future__ import annotations

import copy
import math
import os
import secrets

import numpy as np

from ...errors import ConfigError, RoundError
from ...message import SERVER_NODE_ID, Message, MessageType, Metadata
from ...records import ArrayRecord, MetricRecord, RecordDict
from ...server import Grid
from ...strategy import SecureAggregation, SecureRound
from . import _keys as k
from ._params import Params, RoundParams
from ._quantize import Vector, dequantize_mean
from ._server import SecureTrain

__all__ = ["SecAggPlus"]

_LEAST_NODES = 3
"""The smallest round SecAgg+ runs: in a sum of two, each node can read the other's update."""
_SHORT_ROUND_RISK = 1e-3
"""The largest chance a Poisson-sampled run may have of drawing a round SecAgg+ cannot run."""


class SecAggPlus(SecureAggregation):
    """SecAgg+ (Bell et al. 2020): the server learns only the weighted sum of the updates.

    Give it to a strategy, ``FedAvg(secure_aggregation=SecAggPlus(17, 9),
    min_train_nodes=17)``, and add ``secaggplus_mod`` to the nodes' ClientApp. Parameters as
    Flower names them:

    Args:
        num_shares: shares each node's secrets are split into: it keeps one and gives one to
            each of its ``num_shares - 1`` neighbours (an odd int of at least 3), or a float
            fraction of the round's nodes.
        reconstruction_threshold: shares needed to rebuild a secret: more than half of
            ``num_shares`` (an int), or a float fraction of it in (0.5, 1]. Higher resists
            more colluding neighbours; lower survives more dropouts.
        max_weight: the largest weight (``weight_key``, e.g. ``num-examples``) a node may
            report; weights must be whole numbers from 1 to it.
        clipping_range: each coordinate of a node's update (trained minus received model) is
            clipped to ``[-clipping_range, clipping_range]``.
        quantization_range: clipped values are rounded to this many levels (the error of
            the mean is below one level, ``2 clipping_range / (quantization_range - 1)``).
        modulus_range: a power of two up to 2**64: sums wrap around it, so the round's
            ``nodes x max_weight x (quantization_range - 1)`` must stay below it.
        timeout: seconds to wait for each stage's replies (None: the round's timeout, for
            each stage): a secure round may take up to 4 x it.
        weighted: False gives every node weight 1 (a DP aggregation turns this off).
        seed: seeds the neighbour graph, for reproducible simulations (None: OS randomness).
    """

    def __init__(
        self,
        num_shares: int | float,
        reconstruction_threshold: int | float,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 2**22,
        modulus_range: int = 2**64,
        timeout: float | None = None,
        weighted: bool = True,
        seed: int | None = None,
    ) -> None:
        self.params = Params(
            num_shares,
            reconstruction_threshold,
            max_weight,
            clipping_range,
            quantization_range,
            modulus_range,
            timeout,
        )
        self.weighted = weighted
        self.seed = seed
        self.weight_key = "num-examples"

    def __repr__(self) -> str:
        p = self.params
        return (
            f"SecAggPlus(num_shares={p.num_shares}, "
            f"reconstruction_threshold={p.reconstruction_threshold}, max_weight={p.max_weight}, "
            f"clipping_range={p.clipping_range}, quantization_range={p.quantization_range}, "
            f"modulus_range={p.modulus_range}, weighted={self.weighted})"
        )

    def for_strategy(self, weight_key: str, weighted: bool, min_train_nodes: int) -> SecAggPlus:
        """A copy for a strategy; ConfigError if its smallest rounds cannot run safely."""
        needed = self.least_nodes
        if min_train_nodes < needed:
            why = (
                "with 2, each node could subtract its own update from the sum"
                if needed == _LEAST_NODES
                else f"num_shares={needed}: each node shares its secrets with {needed - 1} others"
            )
            lower = " or lower num_shares" if needed > _LEAST_NODES else ""
            raise ConfigError(
                f"SecAgg+ needs rounds of at least {needed} nodes ({why}), but "
                f"min_train_nodes={min_train_nodes}: raise min_train_nodes to {needed}{lower}"
            )
        bound = copy.copy(self)
        bound.weighted = self.weighted and weighted
        bound.weight_key = weight_key
        RoundParams.resolve(self.params, min_train_nodes, bound.weighted)
        return bound

    def check_sampling(self, available: int, rate: float, num_rounds: int) -> None:
        """ConfigError if some round of the run likely draws fewer nodes than the shares need.

        A DP run's rounds are Poisson samples (each node with probability ``rate``), and a
        round below ``num_shares`` can be neither skipped nor redrawn: it ends the run. So
        the run is refused before round 1 when the chance that any of its ``num_rounds``
        rounds draws one (a binomial tail) is above ``_SHORT_ROUND_RISK``.
        """
        needed = self.least_nodes
        per_round = _fewer_than(needed, available, rate)
        risk = -math.expm1(num_rounds * math.log1p(-per_round)) if per_round < 1 else 1.0
        if risk > _SHORT_ROUND_RISK:
            raise ConfigError(
                f"SecAgg+ num_shares={self.params.num_shares} needs rounds of at least "
                f"{needed} nodes, but Poisson-sampling fraction_train={rate:g} of {available} "
                f"nodes ({rate * available:g} expected) draws fewer with probability "
                f"{risk:.2g} over {num_rounds} rounds, and such a round ends the run (it can be "
                "neither skipped nor redrawn without voiding the DP guarantee): add nodes, "
                "raise fraction_train or lower num_shares"
            )

    @property
    def least_nodes(self) -> int:
        """The fewest nodes a round of this protocol can have."""
        shares = self.params.num_shares
        return max(_LEAST_NODES, shares) if isinstance(shares, int) else _LEAST_NODES

    def train_round(
        self,
        grid: Grid,
        server_round: int,
        messages: list[Message],
        arrays: ArrayRecord,
        timeout_s: float | None,
    ) -> SecureRound:
        """The round's four exchanges; one reply holding the weighted mean model."""
        if not messages:
            return SecureRound(None, 0, ())
        by_node = {message.metadata.dst_node_id: message for message in messages}
        if len(by_node) != len(messages):
            raise RoundError(f"round {server_round} SecAgg+: a node was sent two train messages")
        round_params = self._round_params(server_round, len(by_node))
        length = sum(math.prod(array.shape) for array in arrays.values()) + 1
        run = SecureTrain(
            grid,
            server_round,
            by_node,
            self.params,
            round_params,
            self.weight_key,
            self.weighted,
            self._graph_seed(server_round),
            timeout_s,
        )
        unmasking = run.run(length)
        total, weight = unmasking.unmasked(server_round)
        count = len(unmasking.summed)
        if not count <= weight <= count * round_params.weight_cap:
            raise RoundError(
                f"round {server_round} SecAgg+: the unmasked total weight {weight} is not "
                f"possible for {count} nodes (a node sent a wrong share or vector)"
            )
        p = self.params
        _check_in_range(server_round, total, weight, p.quantization_range)
        mean = dequantize_mean(total, weight, p.clipping_range, p.quantization_range, arrays)
        metrics = MetricRecord({self.weight_key: weight, k.COUNT: count})
        reply = _reply(grid.run_id, RecordDict({"arrays": mean, "metrics": metrics}))
        return SecureRound(reply, count, tuple(run.failures))

    def _round_params(self, server_round: int, num_nodes: int) -> RoundParams:
        """The round's settings; ConfigError if it sampled too few nodes to share secrets.

        A DP aggregation Poisson-samples, so a round may draw fewer nodes than
        ``min_train_nodes``; such a draw can be neither skipped nor redrawn (either would
        void the DP guarantee, whose sensitivity assumes every draw is aggregated), so the
        run ends, and the message says how to make such draws unlikely.
        """
        needed = self.least_nodes
        if num_nodes < needed:
            raise ConfigError(
                f"SecAgg+ num_shares={self.params.num_shares} needs rounds of at least "
                f"{needed} nodes, but round {server_round} sampled {num_nodes}: with a DP "
                "aggregation the Poisson sample's size varies, and a small draw can be "
                "neither skipped nor redrawn without voiding the DP guarantee: add nodes, "
                "raise fraction_train or lower num_shares, so that fraction_train x "
                "available nodes is well above num_shares"
            )
        return RoundParams.resolve(self.params, num_nodes, self.weighted)

    def _graph_seed(self, server_round: int) -> int:
        if self.seed is None:
            return secrets.randbits(63)
        return int(np.random.default_rng([self.seed, server_round]).integers(2**63))


def _fewer_than(needed: int, nodes: int, rate: float) -> float:
    """P(a Binomial(nodes, rate) draw is below ``needed``), summed in log space."""
    if rate <= 0.0:
        return 1.0
    if rate >= 1.0 or needed > nodes:
        return 0.0 if needed <= nodes else 1.0
    log_p, log_q, top = math.log(rate), math.log1p(-rate), math.lgamma(nodes + 1)
    return min(
        1.0,
        sum(
            math.exp(
                top
                - math.lgamma(k + 1)
                - math.lgamma(nodes - k + 1)
                + k * log_p
                + (nodes - k) * log_q
            )
            for k in range(needed)
        ),
    )


def _check_in_range(server_round: int, total: Vector, weight: int, levels: int) -> None:
    """RoundError unless every unmasked coordinate is a sum of in-range levels.

    Each node sends ``weight x level`` with ``level`` in ``0 .. q-1``, so the sum lies in
    ``[0, total weight x (q-1)]``; outside it, a node sent a value out of range and the sum
    wrapped around the modulus (it would dequantize to garbage).
    """
    if total.size and int(total.max()) > weight * (levels - 1):
        raise RoundError(
            f"round {server_round} SecAgg+: the unmasked sum is out of range (above total "
            f"weight {weight} x (quantization_range - 1)): a node sent a value outside the "
            "quantization range, so the sum wrapped around the modulus; the round is refused"
        )


def _reply(run_id: int, content: RecordDict) -> Message:
    """The round's one train reply, from the server itself (no node sent it)."""
    metadata = Metadata(
        run_id=run_id,
        message_id=os.urandom(16).hex(),
        src_node_id=SERVER_NODE_ID,
        dst_node_id=SERVER_NODE_ID,
        message_type=MessageType.TRAIN,
    )
    return Message(metadata, content)
