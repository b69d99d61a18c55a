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
``n >= 2f + 3``) against the strategy's ``min_train_nodes`` before the first round. A
chain whose filters all work one update at a time and whose aggregator streams keeps
O(model) memory; otherwise the round's updates are held (they are in memory anyway) and
order statistics work one layer at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, RoundError
from ..records import ArrayRecord, MetricRecord
from ._aggregate import WeightedSum

__all__ = [
    "Aggregation",
    "Aggregator",
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
    """Makes one model of a round's updates."""

    streaming: bool = False
    """True if ``aggregate`` consumes its updates one by one without holding them."""
    works_on_sum: bool = False
    """True if it is right on one update that is already the (weighted) mean of the nodes'
    (secure aggregation's only view); an order statistic or a selection needs each update."""

    def check(self, min_train_nodes: int) -> None:
        """Raise ConfigError if rounds of ``min_train_nodes`` valid updates cannot satisfy it."""
        return None

    @abstractmethod
    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """The aggregate of ``updates`` (None if there were none)."""


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

    Filters and aggregators are stateless: what they make of a round depends on that
    round alone. The optimizers' states, together, are the chain's state: ``init`` makes
    it and ``update`` threads it from round to round.
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
        """The optimizers' states, each under its position: ``"0:<name>"``, ``"1:<name>"``..."""
        return ArrayRecord(
            (f"{position}:{name}", data)
            for position, optimizer in enumerate(self.optimizers)
            for name, data in optimizer.init(arrays).items()
        )

    def update(
        self, updates: Iterable[Update], current: ArrayRecord, state: ArrayRecord
    ) -> tuple[ArrayRecord | None, ArrayRecord]:
        """The next global model from a round's updates, and the state after it.

        The model is None if no update survived the filters; the state is then the one given.
        """
        aggregate = self.aggregator.aggregate(self._filtered(updates, current), current)
        if aggregate is None:
            return None, state
        stepped = ArrayRecord()
        for position, optimizer in enumerate(self.optimizers):
            prefix = f"{position}:"
            own = ArrayRecord(
                (key[len(prefix) :], data) for key, data in state.items() if key.startswith(prefix)
            )
            aggregate, own = optimizer.update(current, aggregate, own)
            stepped.update((prefix + key, data) for key, data in own.items())
        return aggregate, stepped

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
                raise ConfigError(
                    f"chain: two aggregators ({aggregators[0]!r} and {piece!r}); keep one"
                )
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
