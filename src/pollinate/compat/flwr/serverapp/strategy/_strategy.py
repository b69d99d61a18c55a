"""Flower's message-API ``Strategy`` and ``Result``, run by pollinate's one round loop.

``Strategy.start`` hands the strategy to ``pollinate.Strategy.start`` through ``_Bridge``, a
pollinate Strategy that calls the Flower methods (``configure_train(server_round, arrays,
config, grid)``, ``aggregate_train(server_round, replies) -> (arrays, metrics)``, ...) with
Flower views of pollinate's records and messages. pollinate's loop sets aside error and
malformed replies before ``aggregate_*`` sees them, and a strategy whose ``aggregate_*``
is Flower's FedAvg's own (not overridden) gets its replies streamed, one model at a time;
an overriding method gets a list, which it may read again after ``super()``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .....errors import ConfigError
from .....message import Message as CoreMessage
from .....records import ArrayRecord as CoreArrayRecord
from .....records import ConfigRecord as CoreConfigRecord
from .....records import MetricRecord as CoreMetricRecord
from .....server import Grid as CoreGrid
from .....server import Result as CoreResult
from .....strategy import Strategy as CoreStrategy
from .....strategy import streams_replies
from ..._records import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    core_message,
    flower_message,
    flower_record,
)
from .._app import Grid, core_grid

__all__ = ["EvaluateFn", "Result", "Strategy", "current_round"]

log = logging.getLogger("pollinate.compat.flwr")

EvaluateFn = Callable[[int, ArrayRecord], "MetricRecord | Mapping[str, Any] | None"]


@dataclass
class Result:
    """Flower's strategy ``Result``: the final model and the metrics of every round.

    ``core`` is pollinate's own ``Result`` (failures, wall times, ``final_metrics()``).
    """

    arrays: ArrayRecord = field(default_factory=ArrayRecord)
    train_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_serverapp: dict[int, MetricRecord] = field(default_factory=dict)
    core: CoreResult | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """The model's size and each round's metrics, a line each (not every array)."""
        size = sum(array.numpy().nbytes for array in self.arrays.values()) / 1e6
        lines = [f"Result: ArrayRecord of {len(self.arrays)} arrays ({size:.3f} MB)"]
        for title, by_round in (
            ("train metrics (ClientApp)", self.train_metrics_clientapp),
            ("evaluate metrics (ClientApp)", self.evaluate_metrics_clientapp),
            ("evaluate metrics (ServerApp)", self.evaluate_metrics_serverapp),
        ):
            lines.append(f"{title}, by round:" + ("" if by_round else " none"))
            lines += [f"  {r}: {_metrics_line(m)}" for r, m in sorted(by_round.items())]
        return "\n".join(lines)

    @classmethod
    def from_core(cls, result: CoreResult) -> Result:
        """Flower's Result for pollinate's (the arrays are shared, not copied)."""
        return cls(
            arrays=flower_record(result.arrays),
            train_metrics_clientapp=_by_round(result, "train"),
            evaluate_metrics_clientapp=_by_round(result, "evaluate"),
            evaluate_metrics_serverapp=_by_round(result, "server"),
            core=result,
        )


def _metrics_line(metrics: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )


def _by_round(result: CoreResult, phase: str) -> dict[int, MetricRecord]:
    return {r: MetricRecord(m) for r, m in result.metrics(phase).items()}  # type: ignore[arg-type]


@dataclass
class RoundState:
    """What pollinate's loop knows of the round in progress: the model and strategy state."""

    arrays: CoreArrayRecord
    state: CoreArrayRecord
    next_state: CoreArrayRecord | None = None


class Strategy(ABC):
    """Flower's message-API strategy: subclass it and implement the five methods.

    ``start`` runs it on pollinate's round loop (``pollinate.Strategy.start``): sampling,
    reply checks, history and the run's observers are pollinate's.
    """

    _round: RoundState | None = None

    @abstractmethod
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The train messages of this round."""

    @abstractmethod
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The new model (None: keep the current one) and the train metrics."""

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The evaluate messages of this round (none: no federated evaluation)."""

    @abstractmethod
    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The evaluate metrics of this round."""

    @abstractmethod
    def summary(self) -> None:
        """Log the strategy's settings."""

    def start(
        self,
        grid: Grid | CoreGrid,
        initial_arrays: CoreArrayRecord,
        num_rounds: int = 3,
        timeout: float | None = 3600,
        train_config: Mapping[str, Any] | None = None,
        evaluate_config: Mapping[str, Any] | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Run ``num_rounds`` rounds on pollinate's loop and return Flower's Result.

        ``evaluate_fn(server_round, arrays)`` runs before round 1 and after each round; it
        gets a Flower ArrayRecord view of the global model.
        """
        self.summary()
        flower_fn = None if evaluate_fn is None else _FlowerEvaluateFn(evaluate_fn)
        result = _Bridge(self).start(
            core_grid(grid),
            initial_arrays,
            num_rounds=num_rounds,
            timeout_s=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=flower_fn,
        )
        if isinstance(grid, Grid):
            grid.ran_strategy = True
        return Result.from_core(result)

    # What pollinate's loop asks beyond Flower's five methods; FedAvg refines them.

    def init_state(self, arrays: CoreArrayRecord) -> CoreArrayRecord:
        """What the strategy keeps between rounds (nothing: Flower's strategies keep it)."""
        return CoreArrayRecord()

    def check_train_reply(self, reply: CoreMessage, arrays: CoreArrayRecord) -> str | None:
        """Why a train reply is set aside before ``aggregate_train`` (errors only, here)."""
        return _error_reason(reply)

    def check_evaluate_reply(self, reply: CoreMessage) -> str | None:
        """Why an evaluate reply is set aside before ``aggregate_evaluate`` (errors only)."""
        return _error_reason(reply)

    def streams(self, method: str) -> bool:
        """Whether ``method`` may get its replies streamed (read once) rather than a list."""
        return False

    @property
    def minimum_replies(self) -> tuple[int, int]:
        """The fewest valid (train, evaluate) replies a round goes on with."""
        return 0, 0

    def min_train_replies(self, num_sent: int) -> int:
        """The fewest valid train replies a round that sent ``num_sent`` goes on with."""
        return self.minimum_replies[0]

    def stop_reason(self, server_round: int, state: CoreArrayRecord) -> str | None:
        """Why the run must end before ``server_round`` (None: go on), e.g. a spent DP budget."""
        return None


def current_round(strategy: Strategy, arrays: CoreArrayRecord) -> RoundState:
    """The round in progress, or one around ``arrays`` when called outside ``start``."""
    if strategy._round is not None:
        return strategy._round
    return RoundState(arrays, strategy.init_state(arrays))


def _error_reason(reply: CoreMessage) -> str | None:
    if reply.error is None:
        return None
    return f"error reply ({reply.error.code}): {reply.error.reason}"


class _FlowerEvaluateFn:
    """pollinate's ``evaluate_fn`` calling a Flower one with a Flower ArrayRecord."""

    __slots__ = ("fn",)

    def __init__(self, fn: EvaluateFn) -> None:
        self.fn = fn

    def __call__(self, server_round: int, arrays: CoreArrayRecord) -> Any:
        return self.fn(server_round, flower_record(arrays))


class _Bridge(CoreStrategy):
    """A pollinate Strategy that runs a Flower one: the adapter between the two signatures."""

    def __init__(self, strategy: Strategy) -> None:
        self.flower = strategy
        self.min_train_nodes, self.min_evaluate_nodes = strategy.minimum_replies
        # An instance attribute shadows the method: pollinate's loop reads the mark from it.
        if strategy.streams("aggregate_train"):
            self.aggregate_train = self._aggregate_train_streamed  # type: ignore[method-assign]
        if strategy.streams("aggregate_evaluate"):
            self.aggregate_evaluate = self._aggregate_evaluate_streamed  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return repr(self.flower)

    def init_state(self, arrays: CoreArrayRecord) -> CoreArrayRecord:
        return self.flower.init_state(arrays)

    def configure_train(
        self,
        server_round: int,
        arrays: CoreArrayRecord,
        config: CoreConfigRecord,
        grid: CoreGrid,
        state: CoreArrayRecord,
    ) -> list[CoreMessage]:
        self.flower._round = RoundState(arrays, state)
        try:
            messages = self.flower.configure_train(
                server_round,
                flower_record(arrays),
                flower_record(config),
                Grid(grid),
            )
            return [core_message(m) for m in messages]
        finally:
            self.flower._round = None

    def aggregate_train(
        self,
        server_round: int,
        arrays: CoreArrayRecord,
        replies: Iterable[CoreMessage],
        state: CoreArrayRecord,
    ) -> tuple[CoreArrayRecord | None, CoreMetricRecord, CoreArrayRecord]:
        return self._flower_train(server_round, arrays, [flower_message(r) for r in replies], state)

    @streams_replies
    def _aggregate_train_streamed(
        self,
        server_round: int,
        arrays: CoreArrayRecord,
        replies: Iterable[CoreMessage],
        state: CoreArrayRecord,
    ) -> tuple[CoreArrayRecord | None, CoreMetricRecord, CoreArrayRecord]:
        return self._flower_train(server_round, arrays, _views(replies), state)

    def _flower_train(
        self,
        server_round: int,
        arrays: CoreArrayRecord,
        replies: Iterable[Message],
        state: CoreArrayRecord,
    ) -> tuple[CoreArrayRecord | None, CoreMetricRecord, CoreArrayRecord]:
        current = self.flower._round = RoundState(arrays, state)
        try:
            new_arrays, metrics = self.flower.aggregate_train(server_round, replies)
        finally:
            self.flower._round = None
        next_state = current.next_state if current.next_state is not None else state
        return new_arrays, _metrics(metrics), next_state

    def configure_evaluate(
        self, server_round: int, arrays: CoreArrayRecord, config: CoreConfigRecord, grid: CoreGrid
    ) -> list[CoreMessage]:
        messages = self.flower.configure_evaluate(
            server_round,
            flower_record(arrays),
            flower_record(config),
            Grid(grid),
        )
        return [core_message(m) for m in messages]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[CoreMessage]
    ) -> CoreMetricRecord:
        views = [flower_message(r) for r in replies]
        return _metrics(self.flower.aggregate_evaluate(server_round, views))

    @streams_replies
    def _aggregate_evaluate_streamed(
        self, server_round: int, replies: Iterable[CoreMessage]
    ) -> CoreMetricRecord:
        return _metrics(self.flower.aggregate_evaluate(server_round, _views(replies)))

    def check_train_reply(self, reply: CoreMessage, arrays: CoreArrayRecord) -> str | None:
        return self.flower.check_train_reply(reply, arrays)

    def check_evaluate_reply(self, reply: CoreMessage) -> str | None:
        return self.flower.check_evaluate_reply(reply)

    def min_train_replies(self, num_sent: int) -> int:
        return self.flower.min_train_replies(num_sent)

    def stop_reason(self, server_round: int, state: CoreArrayRecord) -> str | None:
        return self.flower.stop_reason(server_round, state)


def _views(replies: Iterable[CoreMessage]) -> Iterator[Message]:
    for reply in replies:
        yield flower_message(reply)
        del reply  # hold no reply while the next one comes in: it may be a whole model


def _metrics(metrics: object) -> CoreMetricRecord:
    """What an ``aggregate_*`` returned, as pollinate's loop records it (None: nothing)."""
    if metrics is None:
        return CoreMetricRecord()
    if isinstance(metrics, CoreMetricRecord):
        return metrics
    if isinstance(metrics, Mapping):
        return CoreMetricRecord(metrics)
    raise ConfigError(
        f"aggregate_train/aggregate_evaluate must return a MetricRecord (or None) as the "
        f"metrics, got {type(metrics).__name__}"
    )
