"""FedAvg: the weighted average of the nodes' models (McMahan et al., 2017).

"Communication-Efficient Learning of Deep Networks from Decentralized Data",
https://arxiv.org/abs/1602.05629
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypedDict

import numpy as np

from ..errors import ConfigError, RoundError
from ..message import Message, MessageType
from ..records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from ..server import Grid
from ._aggregate import MetricsAggregationFn, all_finite, weighted_mean
from ._base import (
    EvaluateFn,
    RoundConfig,
    Strategy,
    TrainPlan,
    check_initial_arrays,
    streams_replies,
)
from ._compose import Aggregation, RoundInfo, Update, chain, not_a_chain
from ._secure import COUNT_KEY, SecureAggregation
from ._validate import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    check_evaluate_reply,
    check_train_reply,
)

__all__ = ["FedAvg", "FedAvgOptions", "refuse_aggregation", "seeded_sample"]


class FedAvgOptions(TypedDict, total=False):
    """FedAvg's keyword arguments, which every strategy built on it also takes."""

    fraction_train: float
    fraction_evaluate: float
    min_train_nodes: int
    min_evaluate_nodes: int
    min_available_nodes: int
    weight_key: str
    max_weight: float | None
    train_metrics_aggr_fn: MetricsAggregationFn
    evaluate_metrics_aggr_fn: MetricsAggregationFn
    seed: int
    wait_for_nodes_s: float
    initial_arrays: ArrayRecord | None
    train_config: RoundConfig | None
    evaluate_config: RoundConfig | None
    evaluate_fn: EvaluateFn | None
    secure_aggregation: SecureAggregation | None
    round_deadline_s: float | None
    over_selection: float


_TRAIN, _EVALUATE = 0, 1


def refuse_aggregation(strategy: str, options: Mapping[str, object]) -> None:
    """A strategy with its own aggregation rule cannot take a chain: say so, not ignore it."""
    if "aggregation" in options:
        raise ConfigError(
            f"{strategy} aggregates in its own way and takes no aggregation=; build a "
            "FedAvg(aggregation=chain(...)) for a custom chain"
        )


class FedAvg(Strategy):
    """Federated averaging: sample nodes, train, average their models weighted by data size.

    Args:
        fraction_train: share of the available nodes sampled to train each round.
        fraction_evaluate: share sampled to evaluate each round (0 skips federated evaluation).
        min_train_nodes: fewest nodes a round trains on: the sample's floor, the round size
            pieces are checked against, and the fewest valid train replies to go on.
        min_evaluate_nodes: the same for evaluation.
        min_available_nodes: fewest connected nodes before a round samples (waits up to
            ``wait_for_nodes_s`` seconds for them). docs/strategies.md, "Minimum nodes".
        weight_key: the reply metric that weights each node (default ``"num-examples"``).
        max_weight: replies whose weight exceeds this are set aside (None: no cap).
        train_metrics_aggr_fn, evaluate_metrics_aggr_fn: how node metrics become one set
            (default: mean weighted by ``weight_key``; the nodes' own
            ``privacy.node-epsilon`` and ``privacy.node-delta`` take their maximum).
        seed: seeds node sampling: the same seed picks the same nodes every run.
        aggregation: how the round's models become the next one (default ``chain()``: the
            weighted average); e.g. ``chain(norm_bound(5.0), median(), server_adam(eta=0.01))``.
            Checked against ``min_train_nodes`` here, before any round. A differentially
            private aggregator (``pollinate.privacy``) switches training to Poisson sampling:
            see ``sample_nodes``.
        initial_arrays: the model to start from, so a script needs no ServerApp of its own
            (None: ``start``'s argument, else a node's own weights).
        train_config, evaluate_config: what the nodes get each round with ``server-round``:
            a dict, or a function of the round that returns one.
        evaluate_fn: centralized evaluation, ``(server_round, arrays) -> metrics``, run
            before round 1 and after each round.
        secure_aggregation: a protocol that sums the round's updates so the server never
            sees one (``pollinate.privacy.SecAggPlus(...)``); the chain must then work on the
            sum alone (docs/secure-aggregation.md).
        round_deadline_s: how long a round waits for train replies, on the grid's clock
            (simulated seconds under a population model); later ones fail as TIMEOUT
            (None: ``start``'s ``timeout_s``).
        over_selection: sample this share more training nodes than the round needs and
            fold the first valid replies to arrive, abandoning the rest (0.3: 30% more), as
            deployed cross-device systems do against stragglers. docs/heterogeneity.md.

    The four before it are defaults for ``start``: its own arguments, when given, win.
    """

    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weight_key: str = "num-examples",
        max_weight: float | None = None,
        train_metrics_aggr_fn: MetricsAggregationFn = weighted_mean,
        evaluate_metrics_aggr_fn: MetricsAggregationFn = weighted_mean,
        seed: int = 0,
        wait_for_nodes_s: float = 60.0,
        aggregation: Aggregation | None = None,
        initial_arrays: ArrayRecord | None = None,
        train_config: RoundConfig | None = None,
        evaluate_config: RoundConfig | None = None,
        evaluate_fn: EvaluateFn | None = None,
        secure_aggregation: SecureAggregation | None = None,
        round_deadline_s: float | None = None,
        over_selection: float = 0.0,
    ) -> None:
        for name, value in (
            ("fraction_train", fraction_train),
            ("fraction_evaluate", fraction_evaluate),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        for name, count in (
            ("min_train_nodes", min_train_nodes),
            ("min_evaluate_nodes", min_evaluate_nodes),
            ("min_available_nodes", min_available_nodes),
        ):
            if count < 0:
                raise ConfigError(f"{name} must be 0 or more, got {count}")
        if round_deadline_s is not None and (
            isinstance(round_deadline_s, bool) or not round_deadline_s > 0
        ):
            raise ConfigError(f"round_deadline_s must be positive seconds, got {round_deadline_s}")
        if isinstance(over_selection, bool) or not 0.0 <= over_selection <= 10.0:
            raise ConfigError(
                f"over_selection must be between 0 and 10 (0.3 samples 30% more nodes), got "
                f"{over_selection}"
            )
        if max_weight is not None and not max_weight > 0:
            raise ConfigError(f"max_weight must be positive, got {max_weight}")
        if initial_arrays is not None:
            check_initial_arrays(initial_arrays)
        for name, config in (("train_config", train_config), ("evaluate_config", evaluate_config)):
            if config is not None and not (callable(config) or isinstance(config, Mapping)):
                raise ConfigError(
                    f"{name} must be a dict or a function of the round, got {type(config).__name__}"
                )
        if evaluate_fn is not None and not callable(evaluate_fn):
            raise ConfigError(f"evaluate_fn must be a function, got {type(evaluate_fn).__name__}")
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weight_key = weight_key
        self.max_weight = max_weight
        self.train_metrics_aggr_fn = train_metrics_aggr_fn
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn
        self.seed = seed
        self.wait_for_nodes_s = wait_for_nodes_s
        self.initial_arrays = initial_arrays
        self.train_config = train_config
        self.evaluate_config = evaluate_config
        self.evaluate_fn = evaluate_fn
        self.aggregation = aggregation if aggregation is not None else chain()
        if not isinstance(self.aggregation, Aggregation):
            raise not_a_chain(aggregation)
        self.aggregation.check(min_train_nodes)
        if self.aggregation.poisson_sampling:
            self.aggregation.aggregator.check_sampling(fraction_train)
        self._sample: RoundInfo | None = None  # this round's Poisson sample, for aggregation
        self.round_deadline_s = round_deadline_s
        self.over_selection = over_selection
        self._needed: int | None = None  # this round's train replies to fold, when over-selecting
        if secure_aggregation is not None:
            self.secure_aggregation = self._secured(secure_aggregation)
        self._check_over_selection()

    def _check_over_selection(self) -> None:
        """ConfigError if over-selection would void what DP or secure aggregation relies on."""
        if self.over_selection == 0.0:
            return
        if self.aggregation.poisson_sampling:
            raise ConfigError(
                f"{type(self).__name__}: over_selection keeps the first replies to arrive, so "
                "which updates count depends on the nodes' speed, but the DP accountant "
                "assumes each node is Poisson-sampled with fraction_train and its update "
                "used: drop over_selection (round_deadline_s is allowed)"
            )
        if self.secure_aggregation is not None:
            raise ConfigError(
                f"{type(self).__name__}: secure aggregation sums the whole round's cohort and "
                "its dropout tolerance handles stragglers, so over_selection cannot pick the "
                "first replies: drop over_selection (round_deadline_s is allowed)"
            )

    def _secured(self, protocol: SecureAggregation) -> SecureAggregation:
        """``protocol`` bound to this strategy, or ConfigError if it cannot aggregate that way."""
        if not isinstance(protocol, SecureAggregation):
            raise ConfigError(
                "secure_aggregation must be a protocol such as pollinate.privacy.SecAggPlus(...), "
                f"got {type(protocol).__name__}"
            )
        name = type(self).__name__
        if type(self).aggregate_train is not FedAvg.aggregate_train:
            raise ConfigError(
                f"{name} aggregates each node's reply in its own way, but secure aggregation "
                "gives the server only their sum: use FedAvg (or FedProx, FedAdam, ...) with "
                "secure_aggregation"
            )
        needs_each = self.aggregation.needs_each_update()
        if needs_each:
            pieces = ", ".join(repr(piece) for piece in needs_each)
            raise ConfigError(
                f"{name}: secure aggregation gives the server only the sum of the updates, but "
                f"{pieces} needs each update (robust filters, clipping on the server and "
                "order statistics cannot see inside a sum): drop it, clip on the nodes "
                "instead, or run without secure_aggregation"
            )
        weighted = not self.aggregation.unweighted
        return protocol.for_strategy(self.weight_key, weighted, self.min_train_nodes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(fraction_train={self.fraction_train}, "
            f"fraction_evaluate={self.fraction_evaluate}, min_train_nodes={self.min_train_nodes}, "
            f"min_evaluate_nodes={self.min_evaluate_nodes}, "
            f"min_available_nodes={self.min_available_nodes}, seed={self.seed}"
            + ("" if self.aggregation.is_default else f", aggregation={self.aggregation!r}")
            + (
                ""
                if self.secure_aggregation is None
                else f", secure_aggregation={self.secure_aggregation!r}"
            )
            + (
                ""
                if self.round_deadline_s is None
                else f", round_deadline_s={self.round_deadline_s}"
            )
            + ("" if not self.over_selection else f", over_selection={self.over_selection}")
            + ")"
        )

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        """The aggregation pieces' starting state (empty without stateful pieces)."""
        return self.aggregation.init(arrays)

    def growing_state(self) -> frozenset[str]:
        """The aggregation's growing state entries (a DP accountant's history)."""
        return self.aggregation.growing_state

    def resume_state(self, state: ArrayRecord, last_round: int) -> ArrayRecord:
        """The aggregation's state to go on with (DP accounts the interrupted round)."""
        return self.aggregation.resume(state, last_round, self.fraction_train)

    def stop_reason(self, server_round: int, state: ArrayRecord) -> str | None:
        """The aggregation's reason to end the run before ``server_round`` (a DP budget)."""
        return self.aggregation.stop_reason(server_round, state, self.fraction_train)

    def train_plan(self, num_sent: int, timeout_s: float | None) -> TrainPlan:
        """Wait until ``round_deadline_s`` at most; over-selecting, fold the first replies only."""
        deadline = self.round_deadline_s
        if deadline is not None and (timeout_s is None or deadline < timeout_s):
            timeout_s = deadline
        needed, self._needed = self._needed, None
        keep_first = needed if needed is not None and needed < num_sent else None
        return TrainPlan(timeout_s, keep_first)

    def min_train_replies(self, num_sent: int) -> int:
        """``min_train_nodes``, or every node sent to when a Poisson sample drew fewer."""
        if self.aggregation.poisson_sampling:
            return min(self.min_train_nodes, num_sent)
        return self.min_train_nodes

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """Send the global model and config (with the pieces' entries) to a sample of nodes."""
        if self.aggregation.poisson_sampling:  # the DP sample is seeded from the state
            nodes = self.sample_nodes(grid, server_round, _TRAIN, state)
        else:  # as before DP: a subclass's own sample_nodes(grid, round, phase) still fits
            nodes = self.sample_nodes(grid, server_round, _TRAIN)
        extra = self.aggregation.node_config(state)
        if extra:
            config = ConfigRecord({**config, **extra})
        return _messages(grid.run_id, nodes, MessageType.TRAIN, arrays, config)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Send the new global model to a seeded sample of nodes for evaluation."""
        if self.fraction_evaluate == 0.0:
            return []
        nodes = self.sample_nodes(grid, server_round, _EVALUATE)
        return _messages(grid.run_id, nodes, MessageType.EVALUATE, arrays, config)

    @streams_replies
    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """The aggregation chain over the replies (the weighted mean, folded as they arrive)."""
        metrics: list[MetricRecord] = []

        def updates() -> Iterator[Update]:
            for reply in replies:
                record = reply.content.metrics(METRICS_KEY)
                metrics.append(record)
                weight = float(record[self.weight_key])  # type: ignore[arg-type]
                node = reply.metadata.src_node_id
                yield Update(node, reply.content.arrays(ARRAYS_KEY), weight, record)
                del reply  # hold no reply while the next one comes in: it may be a whole model

        info = self.round_info(server_round)
        mean, state = self.aggregation.update(updates(), arrays, state, info)
        if mean is not None and not all(all_finite(a.numpy()) for a in mean.values()):
            raise RoundError(
                f"round {server_round}: the new model is not finite: {self.aggregation!r} "
                "overflowed (weights that span too wide a range, extreme values, or a server "
                "learning rate too large); cap weights with max_weight or check the pieces"
            )
        aggregated, pieces = self.train_metrics(metrics), self.aggregation.metrics(state)
        if pieces:
            aggregated = MetricRecord({**aggregated, **pieces})
        return mean, aggregated, state

    @streams_replies
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        """Weighted mean of the evaluation metrics."""
        metrics = [reply.content.metrics(METRICS_KEY) for reply in replies]
        aggregated = self.evaluate_metrics_aggr_fn(metrics, self.weight_key)
        return _metric_record(aggregated, "evaluate_metrics_aggr_fn")

    def train_metrics(self, metrics: Sequence[MetricRecord]) -> MetricRecord:
        """The nodes' train metrics as one record, by ``train_metrics_aggr_fn``."""
        aggregated = self.train_metrics_aggr_fn(metrics, self.weight_key)
        return _metric_record(aggregated, "train_metrics_aggr_fn")

    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Set aside errors, mismatched or non-finite arrays, bad weights or metrics.

        Also a node's claim to be a secure sum (``secagg.count``, which only the protocol
        sets), and what the aggregation pieces refuse (an update longer than the DP clip).
        """
        reason = check_train_reply(reply, arrays, self.weight_key, self.max_weight)
        if reason is not None:
            return reason
        content = reply.content
        metrics = content.metrics(METRICS_KEY)
        if COUNT_KEY in metrics:
            return (
                f"its metrics carry {COUNT_KEY!r}, which only a secure aggregation protocol "
                "sets (a DP aggregation would count the reply as that many nodes)"
            )
        return self.aggregation.check_update(content.arrays(ARRAYS_KEY), metrics, arrays)

    def check_evaluate_reply(self, reply: Message) -> str | None:
        """Set aside errors and bad weights or metrics."""
        return check_evaluate_reply(reply, self.weight_key, self.max_weight)

    def sample_nodes(
        self, grid: Grid, server_round: int, phase: int, state: ArrayRecord | None = None
    ) -> list[int]:
        """A seeded sample: the same seed, round and phase always pick the same nodes.

        It waits for ``min_available_nodes`` connected nodes, or for the phase's minimum
        (``min_train_nodes``, ``min_evaluate_nodes``) if that is larger. With a
        differentially private aggregator, training nodes are Poisson-sampled instead: see
        ``poisson_sample`` (``state``: the strategy's, which seeds it).
        """
        fraction, minimum, name = (
            (self.fraction_train, self.min_train_nodes, "min_train_nodes")
            if phase == _TRAIN
            else (self.fraction_evaluate, self.min_evaluate_nodes, "min_evaluate_nodes")
        )
        wait, wait_name = self.min_available_nodes, "min_available_nodes"
        if minimum > wait:  # a round cannot go on with fewer nodes than its phase needs
            wait, wait_name = minimum, name
        try:
            available = _sorted_ids(grid.wait_for_nodes(wait, self.wait_for_nodes_s))
        except RoundError as err:
            raise RoundError(
                f"{type(self).__name__} needs {wait_name}={wait} connected nodes, but {err}: "
                f"{self._fewer_nodes_fix(wait_name, wait)}"
            ) from None
        if phase == _TRAIN and self.aggregation.poisson_sampling:
            return self.poisson_sample(available, server_round, state)
        count = max(minimum, int(fraction * len(available)), 1)
        if count > len(available):
            raise RoundError(
                f"{type(self).__name__} needs {name}={minimum} nodes but only {len(available)} "
                f"are available: lower {name} or add nodes"
            )
        if phase == _TRAIN and self.over_selection:
            self._needed = count
            count = min(len(available), math.ceil(count * (1.0 + self.over_selection)))
        return seeded_sample(available, count, self.seed, server_round, phase)

    def _fewer_nodes_fix(self, name: str, wanted: int) -> str:
        """The fix for too few connected nodes: add some, or lower ``name`` if that is allowed."""
        secure = self.secure_aggregation
        if name == "min_train_nodes" and secure is not None and wanted <= secure.least_nodes:
            return f"add nodes (secure aggregation needs rounds of at least {secure.least_nodes})"
        return f"lower {name} or add nodes"

    def poisson_sample(
        self, available: Sequence[int], server_round: int, state: ArrayRecord | None = None
    ) -> list[int]:
        """Each available node independently with probability ``fraction_train``.

        What a DP accountant's subsampling assumes, so the sample's size varies (it may be
        0: the aggregator then takes a noise-only step). ``min_train_nodes`` guards the
        expected size, ``fraction_train x available``, before sampling; a sample below it
        is never drawn again, since redrawing would void the guarantee. The draw comes
        from the aggregator's randomness (OS randomness unless it was given a seed): a
        sample known in advance would void the amplification by sampling too.
        """
        expected = self.fraction_train * len(available)
        if expected < self.min_train_nodes:
            raise RoundError(
                f"{type(self).__name__} Poisson-samples fraction_train={self.fraction_train} of "
                f"{len(available)} available nodes, {expected:g} expected, below "
                f"min_train_nodes={self.min_train_nodes}: raise fraction_train, add nodes or "
                "lower min_train_nodes"
            )
        self._check_secure_sampling(len(available), server_round)
        if state is None:
            state = self.init_state(ArrayRecord())
        rng = self.aggregation.sampling_rng(server_round, state)
        drawn = np.flatnonzero(rng.random(len(available)) < self.fraction_train)
        nodes = [available[int(i)] for i in drawn]
        info = RoundInfo(server_round, len(available), len(nodes), self.fraction_train)
        self.aggregation.aggregator.check_round(info)
        self._sample = info  # only the latest: a failed round's is replaced, not kept
        return nodes

    def _check_secure_sampling(self, available: int, server_round: int) -> None:
        """At the run's first draw: ConfigError if the protocol likely meets a round too small."""
        planned = self.planned_rounds
        if self.secure_aggregation is not None and planned and server_round == planned[0]:
            rounds = planned[1] - planned[0] + 1
            self.secure_aggregation.check_sampling(available, self.fraction_train, rounds)

    def round_info(self, server_round: int) -> RoundInfo | None:
        """The Poisson sample ``server_round`` drew, taken once (None: none was drawn).

        For adapters that aggregate with ``self.aggregation.update`` themselves.
        """
        info = self._sample if self._sample and self._sample.server_round == server_round else None
        self._sample = None
        return info


def _sorted_ids(nodes: Sequence[int]) -> Sequence[int]:
    """The node ids in order; a range (a simulation's nodes) is kept as it is, not listed."""
    if isinstance(nodes, range) and nodes.step > 0:
        return nodes
    return sorted(nodes)


def seeded_sample(
    available: Sequence[int], count: int, seed: int, server_round: int, phase: int
) -> list[int]:
    """``count`` of the ``available`` node ids: the same ones for the same seed, round and phase."""
    rng = np.random.default_rng([seed, server_round, phase])
    chosen = rng.choice(len(available), size=count, replace=False)
    return [available[i] for i in sorted(chosen)]


def _messages(
    run_id: int, nodes: list[int], message_type: str, arrays: ArrayRecord, config: ConfigRecord
) -> list[Message]:
    # Each message gets its own records (sharing the read-only arrays), so a node that edits
    # its content cannot change what another node receives.
    return [
        Message.create(
            RecordDict({ARRAYS_KEY: ArrayRecord(arrays), CONFIG_KEY: ConfigRecord(config)}),
            node_id,
            message_type,
            run_id=run_id,
        )
        for node_id in nodes
    ]


def _metric_record(value: object, what: str) -> MetricRecord:
    """What a metrics aggregation function returned, as a MetricRecord (a dict will do)."""
    if isinstance(value, MetricRecord):
        return value
    if isinstance(value, Mapping):
        return MetricRecord(value)
    raise ConfigError(
        f"{what} must return a dict of metrics (or a MetricRecord), got {type(value).__name__}"
    )
