"""Flower's abstract ``Strategy``, run by pollinate's one round loop (``pollinate.Strategy``).

A Flower strategy is a ``pollinate.Strategy``: ``start`` (so ``as_server_app``,
``run_simulation`` and ``start_server``) runs pollinate's loop, and each round the loop's
steps call the Flower methods:

- ``configure_train`` -> ``configure_fit(server_round, parameters, client_manager)``, whose
  ``(ClientProxy, FitIns)`` pairs become train messages;
- ``aggregate_train`` -> ``aggregate_fit(server_round, results, failures)`` with
  ``(ClientProxy, FitRes)`` pairs (a list, readable again after ``super()``) and the replies
  pollinate set aside as exceptions; the ``Parameters`` it returns become the next model;
- the evaluate phase likewise -> ``configure_evaluate`` / ``aggregate_evaluate``;
- centralized evaluation -> ``evaluate(server_round, parameters)``, before round 1 and
  after each round; with no initial model, ``initialize_parameters`` is asked first.

With ``secure_aggregation`` set (``flwr.server.workflow``'s ``SecAggPlusWorkflow`` sets it
for its run), the train exchange is that protocol's and ``aggregate_fit`` gets one result:
the mean of the secure sum, its ``num_examples`` the total weight, ``secagg.count`` (how
many clients are in it) in its metrics; the clients that dropped out are its failures.

Flower's ``configure_evaluate`` and ``aggregate_evaluate`` share their names with
pollinate's but not their signatures, so the loop runs on a small ``_Driver`` that renames
them. Flower's rounds go on with whatever replies arrive: the loop's minimum valid replies
is 0 here (Flower's ``min_*_clients`` are sampling floors).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .....errors import ConfigError
from .....message import Message, MessageType
from .....records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from .....server import Grid, Result
from .....strategy import EvaluateFn, RoundConfig, SecureAggregation, SecureRound
from .....strategy import Strategy as CoreStrategy
from .....strategy._validate import check_evaluate_reply, check_train_reply
from ...client._adapter import TEXT_METRICS
from ...common.logger import warn_once
from ...common.parameter import bytes_to_ndarray
from ...common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    Status,
)
from ..client_manager import ClientManager
from ..client_proxy import ClientProxy

__all__ = ["ReplyFailure", "Strategy", "parameters_view", "record_of"]

log = logging.getLogger("pollinate.flwr")

NUM_EXAMPLES = "num-examples"
"""The reply metric pollinate's NumPyClient adapter puts the number of examples under."""
LOSS = "loss"
_OK = Status(Code.OK, "Success")

FitResults = list[tuple[ClientProxy, FitRes]]
EvaluateResults = list[tuple[ClientProxy, EvaluateRes]]
Failures = list[Any]


class ReplyFailure(Exception):
    """A reply pollinate set aside (an error, a timeout, arrays that do not fit the model)."""

    def __init__(self, node_id: int, reason: str) -> None:
        super().__init__(f"node {node_id}: {reason}")
        self.node_id = node_id
        self.reason = reason


@dataclass
class _Round:
    """What one round's steps share: the model, the strategy state and the set-aside replies."""

    manager: ClientManager
    secure: bool = False
    """Whether the train exchange is a secure aggregation's (one result: the sum's mean)."""
    arrays: ArrayRecord = field(default_factory=ArrayRecord)
    state: ArrayRecord = field(default_factory=ArrayRecord)
    train_failures: Failures = field(default_factory=list)
    evaluate_failures: Failures = field(default_factory=list)


class Strategy(CoreStrategy):
    """Subclass and implement Flower's six methods; pollinate's loop calls them each round."""

    min_train_nodes = 0
    min_evaluate_nodes = 0
    _round: _Round | None = None

    @abstractmethod
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """The initial model (None: a node is asked for its own)."""

    @abstractmethod
    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Which clients train this round, each with its ``FitIns``."""

    @abstractmethod
    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: Failures
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The next model (None: keep the current one) and the round's training metrics."""

    @abstractmethod
    def configure_evaluate(  # type: ignore[override]  # Flower's signature, not pollinate's
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Which clients evaluate this round, each with its ``EvaluateIns``."""

    @abstractmethod
    def aggregate_evaluate(  # type: ignore[override]  # Flower's signature, not pollinate's
        self, server_round: int, results: EvaluateResults, failures: Failures
    ) -> tuple[float | None, dict[str, Scalar]]:
        """The round's distributed loss (None: none) and evaluation metrics."""

    @abstractmethod
    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Centralized evaluation of the model: (loss, metrics), or None to skip it."""

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord | None = None,
        num_rounds: int = 3,
        timeout_s: float | None = 3600.0,
        train_config: RoundConfig | None = None,
        evaluate_config: RoundConfig | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Run ``num_rounds`` on pollinate's round loop, calling the Flower methods each round.

        A round's config comes from ``configure_fit`` / ``configure_evaluate`` (Flower's
        ``on_fit_config_fn``), so ``train_config`` and ``evaluate_config`` are refused.
        """
        if train_config is not None or evaluate_config is not None:
            raise ConfigError(
                f"{type(self).__name__} is a Flower strategy: its round config comes from "
                "on_fit_config_fn / on_evaluate_config_fn, not train_config / evaluate_config"
            )
        manager = ClientManager(grid)
        self._round = _Round(manager, secure=self.secure_aggregation is not None)
        if initial_arrays is None:
            parameters = self.initialize_parameters(manager)
            if parameters is not None:
                initial_arrays = record_of(parameters, None)
        driver = _Driver(self)
        if self.secure_aggregation is not None:
            driver.secure_aggregation = _DropoutsAsFailures(self.secure_aggregation, self)
        if evaluate_fn is None and self.evaluates_centrally():
            evaluate_fn = driver.evaluate_centrally
        try:
            return driver.start(
                grid,
                initial_arrays,
                num_rounds=num_rounds,
                timeout_s=timeout_s,
                evaluate_fn=evaluate_fn,
            )
        finally:
            self._round = None

    def evaluates_centrally(self) -> bool:
        """Whether ``evaluate`` may return results (False: the run skips calling it)."""
        return True

    # pollinate's steps, each calling the Flower method it stands for

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """``configure_fit``'s pairs as train messages."""
        current = self._current(grid)
        current.arrays, current.state, current.train_failures = arrays, state, []
        pairs = self.configure_fit(server_round, parameters_view(arrays), current.manager)
        return _messages(grid, pairs, MessageType.TRAIN, arrays, "configure_fit")

    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """``aggregate_fit`` over the round's ``(ClientProxy, FitRes)`` pairs."""
        current = self._current(None)
        current.arrays, current.state = arrays, state
        results = [(current.manager.proxy(r.metadata.src_node_id), _fit_res(r)) for r in replies]
        parameters, metrics = _pair(
            "aggregate_fit",
            self.aggregate_fit(server_round, results, list(current.train_failures)),
        )
        new = None if parameters is None else record_of(parameters, arrays)
        return new, metric_record(metrics, "aggregate_fit"), current.state

    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Pollinate's checks; a reply set aside is one of ``aggregate_fit``'s failures."""
        reason = check_train_reply(reply, arrays, NUM_EXAMPLES, None)
        if reason is None:
            reason = self.refuse_update(reply, arrays)
        if reason is not None:
            self._current(None).train_failures.append(_failure(reply, reason))
        return reason

    def refuse_update(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Why the aggregation sets aside a well-formed train reply (None: it is kept)."""
        return None

    def check_evaluate_reply(self, reply: Message) -> str | None:
        """Pollinate's checks; a reply set aside is one of ``aggregate_evaluate``'s failures."""
        reason = check_evaluate_reply(reply, NUM_EXAMPLES, None)
        if reason is None and not isinstance(reply.content.metrics("metrics").get(LOSS), float):
            reason = f"reply metrics have no {LOSS!r}"
        if reason is not None:
            self._current(None).evaluate_failures.append(_failure(reply, reason))
        return reason

    def evaluate_messages(
        self, server_round: int, arrays: ArrayRecord, grid: Grid
    ) -> list[Message]:
        """``configure_evaluate``'s pairs as evaluate messages."""
        current = self._current(grid)
        current.evaluate_failures = []
        pairs = self.configure_evaluate(server_round, parameters_view(arrays), current.manager)
        return _messages(grid, pairs, MessageType.EVALUATE, arrays, "configure_evaluate")

    def aggregate_evaluate_replies(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord:
        """``aggregate_evaluate`` over the round's ``(ClientProxy, EvaluateRes)`` pairs."""
        current = self._current(None)
        results = [
            (current.manager.proxy(r.metadata.src_node_id), _evaluate_res(r)) for r in replies
        ]
        loss, metrics = _pair(
            "aggregate_evaluate",
            self.aggregate_evaluate(server_round, results, list(current.evaluate_failures)),
        )
        record = metric_record(metrics, "aggregate_evaluate")
        if loss is not None:
            record[LOSS] = float(loss)
        return record

    def _current(self, grid: Grid | None) -> _Round:
        """The run's round state (a step called outside ``start`` gets a fresh one)."""
        if self._round is None:
            if grid is None:
                raise ConfigError(
                    f"{type(self).__name__}'s pollinate steps run inside start(); call "
                    "strategy.start(grid, ...) or pass the strategy to start_simulation"
                )
            self._round = _Round(ClientManager(grid))
        return self._round


class _Driver(CoreStrategy):
    """The round loop's view of a Flower strategy: its pollinate-named evaluate steps."""

    min_train_nodes = 0
    min_evaluate_nodes = 0

    def __init__(self, flower: Strategy) -> None:
        self.flower = flower

    def __repr__(self) -> str:
        return repr(self.flower)

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        return self.flower.init_state(arrays)

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        return self.flower.configure_train(server_round, arrays, config, grid, state)

    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        return self.flower.aggregate_train(server_round, arrays, replies, state)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        return self.flower.evaluate_messages(server_round, arrays, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        return self.flower.aggregate_evaluate_replies(server_round, replies)

    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        return self.flower.check_train_reply(reply, arrays)

    def check_evaluate_reply(self, reply: Message) -> str | None:
        return self.flower.check_evaluate_reply(reply)

    def evaluate_centrally(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """The Flower strategy's ``evaluate``, as pollinate's ``evaluate_fn``."""
        outcome = self.flower.evaluate(server_round, parameters_view(arrays))
        if outcome is None:
            return {}
        loss, metrics = _pair("evaluate", outcome)
        return {**metric_record(metrics, "evaluate"), LOSS: float(loss)}


class _DropoutsAsFailures(SecureAggregation):
    """A secure protocol whose dropped clients become ``aggregate_fit``'s failures, as in Flower.

    Flower's ``accept_failures=False`` then keeps the model when a client dropped out.
    """

    def __init__(self, protocol: SecureAggregation, flower: Strategy) -> None:
        self.protocol = protocol
        self.flower = flower
        self.weighted = protocol.weighted

    def for_strategy(
        self, weight_key: str, weighted: bool, min_train_nodes: int
    ) -> SecureAggregation:
        bound = self.protocol.for_strategy(weight_key, weighted, min_train_nodes)
        return _DropoutsAsFailures(bound, self.flower)

    def train_round(
        self,
        grid: Grid,
        server_round: int,
        messages: list[Message],
        arrays: ArrayRecord,
        timeout_s: float | None,
    ) -> SecureRound:
        secure = self.protocol.train_round(grid, server_round, messages, arrays, timeout_s)
        failures = [ReplyFailure(f.node_id, f.reason) for f in secure.failures]
        self.flower._current(grid).train_failures = failures
        return secure


def parameters_view(arrays: ArrayRecord) -> Parameters:
    """``arrays`` as Flower ``Parameters``, without copying or serializing them."""
    return Parameters.from_arrays(arrays.to_numpy())


def record_of(parameters: Parameters, like: ArrayRecord | None) -> ArrayRecord:
    """``parameters`` as an ArrayRecord, named like the model ``like`` when they fit it."""
    if not isinstance(parameters, Parameters):
        raise ConfigError(
            f"a strategy must return Parameters, got {type(parameters).__name__}: "
            "wrap arrays with ndarrays_to_parameters(list_of_arrays)"
        )
    arrays = parameters.arrays
    if arrays is None:
        arrays = [bytes_to_ndarray(t) for t in parameters.tensors]
    if like is not None and len(like) == len(arrays):
        return ArrayRecord(zip(like, arrays, strict=True))
    return ArrayRecord.from_numpy(arrays)


def metric_record(metrics: Mapping[str, Any] | None, where: str) -> MetricRecord:
    """Flower metrics as a MetricRecord: numbers and lists of numbers are kept, text is not."""
    if metrics is None:
        return MetricRecord()
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"{where} must return a dict of metrics, got {type(metrics).__name__}")
    kept = {k: v for k, v in metrics.items() if _is_metric(v)}
    if len(kept) < len(metrics):
        dropped = sorted(set(metrics) - set(kept))
        warn_once(
            f"dropped-metrics-{where}",
            f"{where} returned metrics {dropped} that are not numbers: pollinate records "
            "numbers and lists of numbers only, so they are left out of the history",
        )
    return MetricRecord(kept)


def numeric_metrics(metrics: Mapping[str, Any]) -> MetricRecord:
    """The numbers and lists of numbers among a client's metrics (its text ones left out)."""
    return MetricRecord({k: v for k, v in metrics.items() if _is_metric(v)})


def _is_metric(value: object) -> bool:
    if isinstance(value, list):
        return all(_is_metric(v) for v in value) and not any(isinstance(v, list) for v in value)
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _pair(where: str, outcome: Any) -> tuple[Any, Any]:
    if not isinstance(outcome, tuple) or len(outcome) != 2:
        raise ConfigError(f"{where} must return a pair (value, metrics), got {outcome!r:.80}")
    first, second = outcome
    return first, second


def _messages(
    grid: Grid, pairs: Any, message_type: str, arrays: ArrayRecord, where: str
) -> list[Message]:
    """One message per ``(ClientProxy, FitIns | EvaluateIns)`` pair."""
    if not isinstance(pairs, list):
        raise ConfigError(f"{where} must return a list of (ClientProxy, ins) pairs")
    messages = []
    for pair in pairs:
        proxy, ins = _pair(where, pair)
        if not isinstance(proxy, ClientProxy) or not isinstance(ins, (FitIns, EvaluateIns)):
            raise ConfigError(
                f"{where} must return (ClientProxy, FitIns/EvaluateIns) pairs, got "
                f"({type(proxy).__name__}, {type(ins).__name__}): take the proxies from "
                "client_manager.sample(...)"
            )
        content = {"arrays": record_of(ins.parameters, arrays), "config": ConfigRecord(ins.config)}
        messages.append(
            Message.create(RecordDict(content), proxy.node_id, message_type, run_id=grid.run_id)
        )
    return messages


def _split(reply: Message) -> tuple[int, dict[str, Any]]:
    """A reply's number of examples, and its other metrics (the Flower client's own)."""
    metrics: dict[str, Any] = dict(reply.content.metrics("metrics"))
    text = reply.content.get(TEXT_METRICS)
    if isinstance(text, ConfigRecord):  # the client's str, bytes and bool metrics
        metrics.update(text)
    return int(metrics.pop(NUM_EXAMPLES)), metrics


def _fit_res(reply: Message) -> FitRes:
    num_examples, metrics = _split(reply)
    parameters = parameters_view(reply.content.arrays("arrays"))
    return FitRes(_OK, parameters, num_examples, metrics)


def _evaluate_res(reply: Message) -> EvaluateRes:
    num_examples, metrics = _split(reply)
    loss = float(metrics.pop(LOSS))
    return EvaluateRes(_OK, loss, num_examples, metrics)


def _failure(reply: Message, reason: str) -> ReplyFailure:
    return ReplyFailure(reply.metadata.src_node_id, reason)
