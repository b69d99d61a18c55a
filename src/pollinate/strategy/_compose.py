"""Composable aggregation: filters, one aggregator and server optimizers, chained.

A round's valid train replies become :class:`Update` objects (the node's model, its weight
and metrics) and flow through a chain::

    chain(norm_bound(5.0), trimmed_mean(0.1), server_adam(eta=0.01))

- **Filters** (:class:`UpdateFilter`) clip or select updates: ``norm_bound``, ``krum``.
- **One aggregator** (:class:`Aggregator`) makes one model of them: ``weighted_average``
  (the default), ``median``, ``trimmed_mean``, ``bulyan``, ``qfedavg``.
- **Server optimizers** (:class:`ServerOptimizer`) treat ``current - aggregate`` as a
  pseudo-gradient and take a step from the current model: ``server_momentum``,
  ``server_adagrad``, ``server_adam``, ``server_yogi``.

Every piece checks its own parameters when built, and what it needs of a round (Krum:
``n >= 2f + 3``) against the strategy's ``min_train_nodes`` before the first round.

An aggregator may also keep state and know its round (the differential privacy pieces of
:mod:`pollinate.privacy` do: an adaptive clip, the accountant's history): ``init`` makes its
state, ``aggregate_round`` is told the round's sample (:class:`RoundInfo`) and threads the
state as the optimizers do, ``metrics`` reports on it, ``node_config`` adds to what the
nodes are sent, and ``stop_reason`` may end the run before a round (a privacy budget). A
chain whose filters all work one update at a time and whose aggregator streams keeps
O(model) memory; otherwise the round's updates are held (they are in memory anyway) and
order statistics work one layer at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, RoundError
from ..records import ArrayRecord, ConfigValue, MetricRecord
from ._aggregate import WeightedSum

__all__ = [
    "Aggregation",
    "Aggregator",
    "RoundInfo",
    "ServerOptimizer",
    "Update",
    "UpdateFilter",
    "chain",
    "require_updates",
    "weighted_average",
]


@dataclass(frozen=True, slots=True)
class Update:
    """One node's contribution to a round: its model, its weight and its metrics."""

    node_id: int
    arrays: ArrayRecord
    weight: float
    metrics: MetricRecord


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """What an aggregator may know of its round besides the updates: the sample they came from.

    Made by FedAvg's Poisson sample, so only for an aggregator that asks for one
    (``poisson_sampling``): ``sampling_rate`` is each node's chance to be sampled,
    ``fraction_train``.
    """

    server_round: int
    num_available: int
    num_sampled: int
    sampling_rate: float


class UpdateFilter:
    """Clips, rescales or selects a round's updates before they are aggregated."""

    streaming: bool = False
    """True if it handles each update alone (``filter_one``), so the round can stream."""
    works_on_sum: bool = False
    """True if it is right on the sum of the updates alone (secure aggregation's only view)."""

    def check(self, min_train_nodes: int) -> None:
        """Raise ConfigError if rounds of ``min_train_nodes`` valid updates cannot satisfy it."""
        return None

    def filter_one(self, update: Update, current: ArrayRecord) -> Update | None:
        """A streaming filter's verdict on one update (None drops it)."""
        raise NotImplementedError(f"{type(self).__name__} needs the whole round's updates")

    def filter(self, updates: Sequence[Update], current: ArrayRecord) -> list[Update]:
        """The updates to keep, given all of the round's (in send order)."""
        kept = (self.filter_one(u, current) for u in updates)
        return [u for u in kept if u is not None]


class Aggregator(ABC):
    """Makes one model of a round's updates.

    Most aggregators are stateless and only implement ``aggregate``. One that keeps state
    or needs its round (the DP pieces) overrides ``init`` and ``aggregate_round``; its state
    is threaded, checkpointed and resumed with the optimizers' states.
    """

    streaming: bool = False
    """True if ``aggregate`` consumes its updates one by one without holding them."""
    poisson_sampling: bool = False
    """True if the strategy must sample each node independently (a DP guarantee assumes it)."""
    after_whole_round_filters: bool = True
    """False if no filter that compares updates (Krum) may precede it: with DP, one node
    could change which others count, past any bound on its own influence."""
    works_on_sum: bool = False
    """True if it is right on one update that is already the (weighted) mean of the nodes'
    (secure aggregation's only view); an order statistic or a selection needs each update."""
    growing_state: tuple[str, ...] = ()
    """Its state entries that grow a row a round (an accountant's history): a resume
    compares their shape without the row count."""

    def check(self, min_train_nodes: int) -> None:
        """Raise ConfigError if rounds of ``min_train_nodes`` valid updates cannot satisfy it."""
        return None

    def check_sampling(self, sampling_rate: float) -> None:
        """Raise ConfigError, when the strategy is built, if rounds sampled so cannot do."""
        return None

    def check_round(self, info: RoundInfo) -> None:
        """Raise RoundError if the round's sample cannot do, before any node is sent to."""
        return None

    def resume(self, state: ArrayRecord, last_round: int, sampling_rate: float) -> ArrayRecord:
        """The state to go on with after ``last_round`` of an interrupted run (ConfigError: no).

        The default goes on with the state as it was kept.
        """
        return state

    @abstractmethod
    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """The aggregate of ``updates`` (None if there were none)."""

    def init(self, arrays: ArrayRecord) -> ArrayRecord:
        """The state before the first round (empty: none)."""
        return ArrayRecord()

    def aggregate_round(
        self,
        updates: Iterable[Update],
        current: ArrayRecord,
        state: ArrayRecord,
        info: RoundInfo | None,
    ) -> tuple[ArrayRecord | None, ArrayRecord]:
        """The aggregate and the state after it (``info``: None outside a strategy's round)."""
        return self.aggregate(updates, current), state

    def metrics(self, state: ArrayRecord) -> MetricRecord:
        """What the round's train metrics report of the piece, from the state after the round."""
        return MetricRecord()

    def node_config(self, state: ArrayRecord) -> dict[str, ConfigValue]:
        """Entries added to the train config the nodes get this round."""
        return {}

    def check_update(
        self, arrays: ArrayRecord, metrics: MetricRecord, current: ArrayRecord
    ) -> str | None:
        """Why a train reply must be set aside (None to keep it), beyond the strategy's checks."""
        return None

    def stop_reason(
        self, server_round: int, state: ArrayRecord, sampling_rate: float
    ) -> str | None:
        """Why the run must end before ``server_round`` (None: go on)."""
        return None

    def sampling_rng(self, server_round: int, state: ArrayRecord) -> np.random.Generator:
        """The randomness a Poisson sample of ``server_round`` draws from, given its state."""
        raise NotImplementedError(f"{type(self).__name__} does not ask for Poisson sampling")


class ServerOptimizer(ABC):
    """A step from the current model along the pseudo-gradient ``current - aggregate``.

    Its state is a value, as in optax: ``init(arrays)`` gives the state before the first
    round, and ``update(current, aggregate, state)`` gives the next model and the next
    state, leaving the state it got untouched. The state is an ArrayRecord (names to
    arrays), so a round's checkpoint keeps it and a resumed run carries on with it.
    """

    def init(self, arrays: ArrayRecord) -> ArrayRecord:
        """The state before the first round, for a model shaped like ``arrays`` (empty: none)."""
        return ArrayRecord()

    @abstractmethod
    def update(
        self, current: ArrayRecord, aggregate: ArrayRecord, state: ArrayRecord
    ) -> tuple[ArrayRecord, ArrayRecord]:
        """The next global model, and the state after this step."""


class Aggregation:
    """A chain of filters, one aggregator and server optimizers; see :func:`chain`.

    Filters are stateless: what they make of a round depends on that round alone. The
    optimizers' states and the aggregator's, together, are the chain's state: ``init``
    makes it and ``update`` threads it from round to round.
    """

    def __init__(
        self,
        filters: Sequence[UpdateFilter],
        aggregator: Aggregator,
        optimizers: Sequence[ServerOptimizer],
    ) -> None:
        self.filters = tuple(filters)
        self.aggregator = aggregator
        self.optimizers = tuple(optimizers)

    @property
    def streaming(self) -> bool:
        """Whether a round needs O(model) memory, not O(updates x model)."""
        return self.aggregator.streaming and all(f.streaming for f in self.filters)

    def check(self, min_train_nodes: int) -> None:
        """Check every piece against rounds of at least ``min_train_nodes`` valid updates."""
        pieces: tuple[UpdateFilter | Aggregator, ...] = (*self.filters, self.aggregator)
        for piece in pieces:
            piece.check(min_train_nodes)
        comparing = [f for f in self.filters if not f.streaming]
        if comparing and not self.aggregator.after_whole_round_filters:
            own = not type(comparing[0]).__module__.startswith("pollinate.")
            raise ConfigError(
                f"{comparing[0]!r} compares updates with each other, so one node could change "
                "which others count; DP needs each node's influence bounded, which "
                f"{self.aggregator!r} does one update at a time: keep only per-update filters "
                "(norm_bound) before it"
                + ("; if yours looks at each update alone, set streaming = True" if own else "")
            )

    def needs_each_update(self) -> list[UpdateFilter | Aggregator]:
        """The pieces that cannot work on the sum alone (none: secure aggregation may run)."""
        pieces: tuple[UpdateFilter | Aggregator, ...] = (*self.filters, self.aggregator)
        return [piece for piece in pieces if not piece.works_on_sum]

    @property
    def unweighted(self) -> bool:
        """Whether the nodes' weights are to be ignored (each node counts once).

        True for ``weighted_average(use_weights=False)`` and for any piece that says so with
        ``unweighted = True`` (a DP aggregation, whose sensitivity assumes equal weights).
        """
        pieces: tuple[object, ...] = (*self.filters, self.aggregator, *self.optimizers)
        if isinstance(self.aggregator, _WeightedMean) and not self.aggregator.use_weights:
            return True
        return any(getattr(piece, "unweighted", False) for piece in pieces)

    def init(self, arrays: ArrayRecord) -> ArrayRecord:
        """The pieces' states: the aggregator's as ``"a:<name>"``, the optimizers' by position.

        The first optimizer's entries are ``"0:<name>"``, the second's ``"1:<name>"``...
        """
        state = _prefixed(AGGREGATOR_PREFIX, self.aggregator.init(arrays))
        state.update(
            (f"{position}:{name}", data)
            for position, optimizer in enumerate(self.optimizers)
            for name, data in optimizer.init(arrays).items()
        )
        return state

    def update(
        self,
        updates: Iterable[Update],
        current: ArrayRecord,
        state: ArrayRecord,
        info: RoundInfo | None = None,
    ) -> tuple[ArrayRecord | None, ArrayRecord]:
        """The next global model from a round's updates, and the state after it.

        ``info`` tells the aggregator of the round's sample. The model is None if no update
        survived the filters (and the aggregator made nothing of none); the optimizers'
        states are then the ones given.
        """
        aggregate, own = self.aggregator.aggregate_round(
            self._filtered(updates, current), current, self.aggregator_state(state), info
        )
        stepped = _prefixed(AGGREGATOR_PREFIX, own)
        if aggregate is None:
            if not own:  # a stateless aggregator: the state stays as it was
                return None, state
            stepped.update((k, v) for k, v in state.items() if not k.startswith(AGGREGATOR_PREFIX))
            return None, stepped
        for position, optimizer in enumerate(self.optimizers):
            prefix = f"{position}:"
            aggregate, steps = optimizer.update(current, aggregate, _unprefixed(prefix, state))
            stepped.update(_prefixed(prefix, steps))
        return aggregate, stepped

    @property
    def growing_state(self) -> frozenset[str]:
        """The chain's state entries that grow a row a round (the aggregator's, prefixed)."""
        return frozenset(AGGREGATOR_PREFIX + name for name in self.aggregator.growing_state)

    def resume(self, state: ArrayRecord, last_round: int, sampling_rate: float) -> ArrayRecord:
        """The chain's state to go on with after ``last_round`` (the aggregator's say)."""
        own = self.aggregator.resume(self.aggregator_state(state), last_round, sampling_rate)
        resumed = ArrayRecord(
            (k, v) for k, v in state.items() if not k.startswith(AGGREGATOR_PREFIX)
        )
        resumed.update(_prefixed(AGGREGATOR_PREFIX, own))
        return resumed

    def sampling_rng(self, server_round: int, state: ArrayRecord) -> np.random.Generator:
        """The aggregator's randomness for a Poisson sample of ``server_round``."""
        return self.aggregator.sampling_rng(server_round, self.aggregator_state(state))

    def aggregator_state(self, state: ArrayRecord) -> ArrayRecord:
        """The aggregator's own part of the chain's ``state`` (names without the prefix)."""
        return _unprefixed(AGGREGATOR_PREFIX, state)

    @property
    def poisson_sampling(self) -> bool:
        """Whether the strategy must sample each node independently (the aggregator's DP)."""
        return self.aggregator.poisson_sampling

    def metrics(self, state: ArrayRecord) -> MetricRecord:
        """What the round's train metrics report of the pieces, from the state after it."""
        return self.aggregator.metrics(self.aggregator_state(state))

    def node_config(self, state: ArrayRecord) -> dict[str, ConfigValue]:
        """What the pieces add to the train config the nodes get this round."""
        return self.aggregator.node_config(self.aggregator_state(state))

    def check_update(
        self, arrays: ArrayRecord, metrics: MetricRecord, current: ArrayRecord
    ) -> str | None:
        """Why the pieces set aside a train reply (None to keep it)."""
        return self.aggregator.check_update(arrays, metrics, current)

    def stop_reason(
        self, server_round: int, state: ArrayRecord, sampling_rate: float
    ) -> str | None:
        """Why the run must end before ``server_round`` (None: go on)."""
        own = self.aggregator_state(state)
        return self.aggregator.stop_reason(server_round, own, sampling_rate)

    def _filtered(self, updates: Iterable[Update], current: ArrayRecord) -> Iterable[Update]:
        """The updates that pass the filters: streamed if all stream, else held."""
        if self.streaming:
            return _stream(self.filters, updates, current)
        # Leading streaming filters act as updates come, so no original is kept.
        leading = 0
        while leading < len(self.filters) and self.filters[leading].streaming:
            leading += 1
        held = list(_stream(self.filters[:leading], updates, current))
        for piece in self.filters[leading:]:
            held = piece.filter(held, current)
        return held

    @property
    def is_default(self) -> bool:
        """Whether this is plain FedAvg: the weighted average, nothing else."""
        plain = isinstance(self.aggregator, _WeightedMean) and self.aggregator.use_weights
        return plain and not self.filters and not self.optimizers

    def __repr__(self) -> str:
        pieces = (*self.filters, self.aggregator, *self.optimizers)
        return f"chain({', '.join(map(repr, pieces))})"


AGGREGATOR_PREFIX = "a:"
"""The aggregator's entries in a chain's state (optimizers' go under their position)."""


def _prefixed(prefix: str, state: ArrayRecord) -> ArrayRecord:
    return ArrayRecord((prefix + name, data) for name, data in state.items())


def _unprefixed(prefix: str, state: ArrayRecord) -> ArrayRecord:
    return ArrayRecord(
        (name[len(prefix) :], data) for name, data in state.items() if name.startswith(prefix)
    )


def _stream(
    filters: Sequence[UpdateFilter], updates: Iterable[Update], current: ArrayRecord
) -> Iterator[Update]:
    """The updates that pass streaming ``filters``, each filtered as it comes."""
    for update in updates:
        kept = _through(filters, update, current)
        del update  # a clipped update's original may go now
        if kept is not None:
            yield kept


def _through(
    filters: Sequence[UpdateFilter], update: Update, current: ArrayRecord
) -> Update | None:
    """``update`` after each streaming filter in turn (None once one drops it)."""
    kept: Update | None = update
    for piece in filters:
        if kept is None:
            return None
        kept = piece.filter_one(kept, current)
    return kept


def not_a_chain(aggregation: object) -> ConfigError:
    """The error for an ``aggregation=`` that is not a chain: a lone piece is wrapped for you."""
    if isinstance(aggregation, (UpdateFilter, Aggregator, ServerOptimizer)):
        return ConfigError(
            f"aggregation must be a chain of pieces: write aggregation=chain({aggregation!r})"
        )
    return ConfigError(
        f"aggregation must be made with chain(...), got {type(aggregation).__name__}"
    )


def chain(*pieces: UpdateFilter | Aggregator | ServerOptimizer) -> Aggregation:
    """Filters, then at most one aggregator (default: the weighted mean), then optimizers.

    ``chain(norm_bound(5.0), trimmed_mean(0.1), server_adam(eta=0.01))`` clips each update,
    takes the coordinate-wise trimmed mean and applies an Adam step on the server.
    """
    filters: list[UpdateFilter] = []
    aggregators: list[Aggregator] = []
    optimizers: list[ServerOptimizer] = []
    for position, piece in enumerate(pieces, 1):
        if isinstance(piece, UpdateFilter):
            if aggregators or optimizers:
                raise ConfigError(
                    f"chain: filter {piece!r} (piece {position}) comes after the aggregator or "
                    "an optimizer; filters go first"
                )
            filters.append(piece)
        elif isinstance(piece, Aggregator):
            if aggregators:
                raise ConfigError(_two_aggregators(aggregators[0], piece))
            if optimizers:
                raise ConfigError(
                    f"chain: aggregator {piece!r} comes after an optimizer; optimizers go last"
                )
            aggregators.append(piece)
        elif isinstance(piece, ServerOptimizer):
            optimizers.append(piece)
        else:
            raise ConfigError(
                f"chain: piece {position} is a {type(piece).__name__}, not a filter, an "
                "aggregator or a server optimizer (e.g. norm_bound, median, server_adam)"
            )
    return Aggregation(filters, aggregators[0] if aggregators else weighted_average(), optimizers)


class _WeightedMean(Aggregator):
    """The weighted mean of the updates' models (FedAvg's rule), folded as they come."""

    streaming = True
    works_on_sum = True  # the mean of one update that is already the mean is that mean

    def __init__(self, use_weights: bool) -> None:
        self.use_weights = use_weights

    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """Fold each update into a float64 running sum; O(model) memory."""
        total = WeightedSum(current)
        for update in updates:
            total.add(update.arrays, update.weight if self.use_weights else 1.0)
            del update  # folded: its memory may go before the next update comes in
        return total.mean()

    def __repr__(self) -> str:
        return "weighted_average()" if self.use_weights else "weighted_average(use_weights=False)"


def weighted_average(use_weights: bool = True) -> Aggregator:
    """The aggregator of FedAvg: models averaged, weighted by each node's weight.

    ``use_weights=False`` gives every update the same weight: after a robust filter, the
    weights nodes report are not to be trusted either.
    """
    return _WeightedMean(use_weights)


def require_updates(name: str, needed: int, got: int) -> None:
    """RoundError when a round has fewer valid updates than a piece's math needs."""
    if got < needed:
        raise RoundError(
            f"{name} needs at least {needed} valid updates in a round, got {got}: more nodes "
            "failed than it can bear; raise min_train_nodes or lower num_malicious_nodes"
        )


def _two_aggregators(first: Aggregator, second: Aggregator) -> str:
    """Why a chain may not hold both: with a DP piece, that it replaces the mean."""
    message = f"chain: two aggregators ({first!r} and {second!r}); keep one"
    private = [a for a in (first, second) if a.poisson_sampling]
    if not private:
        return message
    return (
        f"{message}: {private[0]!r} replaces the mean (it clips each update, sums and adds "
        "noise), so it takes no other aggregator; an order statistic or a selection (median, "
        "trimmed_mean, krum, bulyan) cannot be combined with differential privacy, which "
        "needs each node's influence bounded"
    )
