"""FedBuff and FedAsync: asynchronous federated learning, one model version at a time.

FedBuff: Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous Aggregation",
https://arxiv.org/abs/2106.06639. FedAsync: Xie et al. 2019, "Asynchronous Federated
Optimization", https://arxiv.org/abs/1903.03934.

Nodes train on the model version they were sent; the server folds each reply as it arrives
(``Grid.receive_first``) and sends the free node a new task at once. A reply trained on
version ``tau`` that arrives while the server is at version ``t`` is ``t - tau`` versions
stale, and counts with the weight ``s(t - tau)`` of a staleness function.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from ..errors import ConfigError, RoundError
from ..message import Message, MessageType
from ..records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from ..server import Failure, Grid, PhaseResult, Result, RoundRecord
from ._aggregate import MetricsAggregationFn, all_finite, weighted_mean
from ._base import (
    LOGGED_FAILURES,
    EvaluateFn,
    RoundConfig,
    Strategy,
    _call_evaluate_fn,
    _round_config,
    check_initial_arrays,
    check_timeout,
    set_aside_level,
)
from ._compose import Aggregation, Update, chain, not_a_chain
from ._fedavg import _messages, _metric_record
from ._secure import SecureAggregation

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ._validate import ARRAYS_KEY, METRICS_KEY, check_evaluate_reply, check_train_reply

__all__ = ["AsyncOptions", "FedAsync", "FedBuff", "Staleness", "constant", "hinge", "polynomial"]

log = logging.getLogger("pollinate.strategy")

FAILURES_PER_TASK = 10
"""A version that sets aside this many replies per concurrent task ends the run."""

VERSIONS_AWAITING_EVALUATION = 2
"""The most versions made that wait for their federated evaluation, each with its model.

When one more is made, the oldest is recorded with the evaluation replies it has; the
rest of its evaluate tasks are abandoned and count as failures of its evaluation.
"""


@dataclass(frozen=True, slots=True)
class Staleness:
    """A staleness function ``s(tau)``: the weight of an update ``tau`` versions stale."""

    kind: str
    a: float = 0.0
    b: float = 0.0

    def __call__(self, tau: int) -> float:
        """``s(tau)`` for ``tau >= 0`` versions of staleness."""
        if self.kind == "polynomial":
            return float((1.0 + tau) ** -self.a)
        if self.kind == "hinge":
            return 1.0 if tau <= self.b else 1.0 / (self.a * (tau - self.b) + 1.0)
        return 1.0

    def __repr__(self) -> str:
        if self.kind == "polynomial":
            return f"polynomial(a={self.a:g})"
        if self.kind == "hinge":
            return f"hinge(a={self.a:g}, b={self.b:g})"
        return "constant()"


def polynomial(a: float = 0.5) -> Staleness:
    """``s(tau) = (1 + tau) ** -a``: FedBuff's default with ``a = 0.5``, ``1/sqrt(1 + tau)``."""
    if not (math.isfinite(a) and a >= 0):
        raise ConfigError(f"polynomial(a) needs a finite a >= 0, got {a!r}")
    return Staleness("polynomial", float(a))


def constant() -> Staleness:
    """``s(tau) = 1``: every update counts alike, however stale."""
    return Staleness("constant")


def hinge(a: float, b: float) -> Staleness:
    """``s(tau) = 1`` for ``tau <= b``, else ``1 / (a (tau - b) + 1)`` (Xie et al. 2019)."""
    if not (math.isfinite(a) and a > 0 and math.isfinite(b) and b >= 0):
        raise ConfigError(f"hinge(a, b) needs a finite a > 0 and b >= 0, got a={a!r}, b={b!r}")
    return Staleness("hinge", float(a), float(b))


class AsyncOptions(TypedDict, total=False):
    """The keyword arguments FedBuff and FedAsync share (FedAsync takes these alone)."""

    concurrency: int
    staleness: Callable[[int], float] | None
    max_staleness: int | None
    weight_key: str
    max_weight: float | None
    train_metrics_aggr_fn: MetricsAggregationFn
    evaluate_metrics_aggr_fn: MetricsAggregationFn
    seed: int
    min_available_nodes: int
    wait_for_nodes_s: float
    evaluate_every: int
    fraction_evaluate: float
    initial_arrays: ArrayRecord | None
    train_config: RoundConfig | None
    evaluate_config: RoundConfig | None
    evaluate_fn: EvaluateFn | None
    secure_aggregation: SecureAggregation | None


class FedBuff(Strategy):
    """Buffered asynchronous aggregation: a new model version every ``buffer_size`` updates.

    ``concurrency`` nodes train at once, each on the version it was sent. Each valid reply is
    folded as it arrives into a buffer; after ``buffer_size`` (K) of them the server steps
    ``x <- x + server_learning_rate * (1/K) * sum_i s(tau_i) (x_i - x_tau_i)``, where
    ``x_tau_i`` is the version node i trained from and ``tau_i`` its staleness, and later
    tasks carry the new version. ``start``'s ``num_rounds`` counts versions; each version
    is one round record.

    Args:
        buffer_size: K, the updates folded into each version.
        concurrency: how many nodes train at once (at least K); a node in training is sent
            no other task, so fewer train when fewer nodes are free.
        staleness: the weight ``s(tau)`` of a stale update: ``polynomial(a)`` (default
            ``polynomial(0.5)``), ``constant()``, ``hinge(a, b)``.
        server_learning_rate: the step along the buffer's mean update (1.0: the mean).
        max_staleness: updates staler than this are set aside as failures (None: any).
        aggregation: ``chain(...)`` over the buffer: it gets each update as the model
            ``x + s(tau)(x_i - x_tau)`` with weight 1, so ``chain()`` is FedBuff's step and
            ``chain(norm_bound(...), server_adam(...))`` clips and steps on the buffer.
            Differentially private aggregators are refused.
        weight_key, max_weight: the weight metric the reply checks and metric means use,
            and the cap above which a reply is set aside.
        train_metrics_aggr_fn: how a version's K metric records become one.
        seed: seeds which free nodes are picked.
        min_available_nodes, wait_for_nodes_s: nodes to wait for when none is free.
        evaluate_every: centralized evaluation every this many versions (and the last).
        fraction_evaluate: share of the available nodes sent each new version to evaluate,
            picked among the free ones (0, the default, skips federated evaluation); a
            version's record waits for its evaluation, and records stay in version order.
            At most ``VERSIONS_AWAITING_EVALUATION`` (2) versions wait: when another is
            made, the oldest is recorded with the evaluation replies it has.
        evaluate_metrics_aggr_fn: how a version's evaluation metrics become one.
        initial_arrays, train_config, evaluate_config, evaluate_fn: defaults for ``start``,
            as FedAvg's.
        secure_aggregation: refused (an asynchronous server has no round's cohort).
    """

    def __init__(
        self,
        *,
        buffer_size: int = 10,
        concurrency: int = 100,
        staleness: Callable[[int], float] | None = None,
        server_learning_rate: float = 1.0,
        max_staleness: int | None = None,
        aggregation: Aggregation | None = None,
        weight_key: str = "num-examples",
        max_weight: float | None = None,
        train_metrics_aggr_fn: MetricsAggregationFn = weighted_mean,
        evaluate_metrics_aggr_fn: MetricsAggregationFn = weighted_mean,
        seed: int = 0,
        min_available_nodes: int = 1,
        wait_for_nodes_s: float = 60.0,
        evaluate_every: int = 1,
        fraction_evaluate: float = 0.0,
        initial_arrays: ArrayRecord | None = None,
        train_config: RoundConfig | None = None,
        evaluate_config: RoundConfig | None = None,
        evaluate_fn: EvaluateFn | None = None,
        secure_aggregation: SecureAggregation | None = None,
    ) -> None:
        name = type(self).__name__
        _check_counts(name, buffer_size, concurrency, max_staleness, evaluate_every)
        _check_options(
            name,
            server_learning_rate=server_learning_rate,
            fraction_evaluate=fraction_evaluate,
            max_weight=max_weight,
            configs={"train_config": train_config, "evaluate_config": evaluate_config},
            evaluate_fn=evaluate_fn,
            secure_aggregation=secure_aggregation,
        )
        if initial_arrays is not None:
            check_initial_arrays(initial_arrays)
        self.buffer_size = buffer_size
        self.concurrency = concurrency
        self.staleness = _checked_staleness(staleness if staleness is not None else polynomial())
        self.server_learning_rate = server_learning_rate
        self.max_staleness = max_staleness
        self.aggregation = _checked_aggregation(name, aggregation, buffer_size)
        self.weight_key = weight_key
        self.max_weight = max_weight
        self.train_metrics_aggr_fn = train_metrics_aggr_fn
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn
        self.fraction_evaluate = fraction_evaluate
        self.evaluate_config = evaluate_config
        self.seed = seed
        self.min_available_nodes = min_available_nodes
        self.wait_for_nodes_s = wait_for_nodes_s
        self.evaluate_every = evaluate_every
        self.initial_arrays = initial_arrays
        self.train_config = train_config
        self.evaluate_fn = evaluate_fn

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(buffer_size={self.buffer_size}, "
            f"concurrency={self.concurrency}, staleness={self.staleness!r}, "
            f"server_learning_rate={self.server_learning_rate}, "
            f"max_staleness={self.max_staleness}, seed={self.seed}"
            + ("" if self.aggregation.is_default else f", aggregation={self.aggregation!r}")
            + ")"
        )

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        """The chain's state (a server optimizer's moments; empty for plain FedBuff)."""
        return self.aggregation.init(arrays)

    def contribution(
        self, current: ArrayRecord, trained: ArrayRecord, base: ArrayRecord, weight: float
    ) -> ArrayRecord:
        """The model one update stands for in the buffer: ``x + s(tau) (x_i - x_tau)``.

        ``current`` is x, ``trained`` the node's model x_i, ``base`` the version x_tau it
        trained from and ``weight`` s(tau). Non-float arrays (counters) are the node's own.
        """
        return ArrayRecord(
            (name, _step(x.numpy(), trained[name].numpy(), base[name].numpy(), weight))
            for name, x in current.items()
        )

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """Train messages with ``arrays`` for every available node (``start`` picks free ones)."""
        return self.train_messages(grid.run_id, list(grid.node_ids()), arrays, config)

    def train_messages(
        self, run_id: int, nodes: list[int], arrays: ArrayRecord, config: ConfigRecord
    ) -> list[Message]:
        """The tasks for ``nodes``: the model version ``arrays`` and ``config``.

        ``config``'s ``server-round`` is the version the tasks will help make.
        """
        return _messages(run_id, nodes, MessageType.TRAIN, arrays, config)

    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """One version from the buffer: ``replies`` carry each update's contribution.

        The chain makes one model of them (by default their mean, ``x + (1/K) sum s (x_i -
        x_tau)``) and the server steps ``server_learning_rate`` of the way to it.
        """
        metrics: list[MetricRecord] = []
        updates = []
        for reply in replies:
            record = reply.content.metrics(METRICS_KEY)
            metrics.append(record)
            node = reply.metadata.src_node_id
            updates.append(Update(node, reply.content.arrays(ARRAYS_KEY), 1.0, record))
        target, state = self.aggregation.update(updates, arrays, state)
        new = None if target is None else self._stepped(arrays, target)
        if new is not None and not all(all_finite(a.numpy()) for a in new.values()):
            raise RoundError(
                f"version {server_round}: the new model is not finite: {self.aggregation!r} "
                "overflowed (extreme updates, or a server learning rate too large)"
            )
        aggregated = _metric_record(
            self.train_metrics_aggr_fn(metrics, self.weight_key), "train_metrics_aggr_fn"
        )
        return new, aggregated, state

    def _stepped(self, current: ArrayRecord, target: ArrayRecord) -> ArrayRecord:
        """``current + server_learning_rate * (target - current)``, in each array's dtype."""
        if self.server_learning_rate == 1.0:
            return target
        return ArrayRecord(
            (name, _step(x.numpy(), target[name].numpy(), x.numpy(), self.server_learning_rate))
            for name, x in current.items()
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Evaluate messages with ``arrays`` for every available node (``start`` picks some)."""
        return self.evaluate_messages(grid.run_id, list(grid.node_ids()), arrays, config)

    def evaluate_messages(
        self, run_id: int, nodes: list[int], arrays: ArrayRecord, config: ConfigRecord
    ) -> list[Message]:
        """The evaluation tasks for ``nodes``: the new version ``arrays`` and ``config``."""
        return _messages(run_id, nodes, MessageType.EVALUATE, arrays, config)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        """The version's evaluation metrics as one record, by ``evaluate_metrics_aggr_fn``."""
        metrics = [reply.content.metrics(METRICS_KEY) for reply in replies]
        aggregated = self.evaluate_metrics_aggr_fn(metrics, self.weight_key)
        return _metric_record(aggregated, "evaluate_metrics_aggr_fn")

    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Set aside errors, arrays unlike the version trained from, bad weights or metrics."""
        reason = check_train_reply(reply, arrays, self.weight_key, self.max_weight)
        if reason is not None:
            return reason
        content = reply.content
        return self.aggregation.check_update(
            content.arrays(ARRAYS_KEY), content.metrics(METRICS_KEY), arrays
        )

    def check_evaluate_reply(self, reply: Message) -> str | None:
        """Set aside errors and bad weights or metrics."""
        return check_evaluate_reply(reply, self.weight_key, self.max_weight)

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
        """Run until ``num_rounds`` model versions are made, each a round record.

        ``timeout_s`` bounds each task, train or evaluate, from when it was sent (on the
        grid's clock): a task not answered by then is abandoned and counts as a failure of
        its version, and its node is free again. Observers, resuming
        (after the last version made; the tasks in flight then are gone) and ``evaluate_fn``
        work as in ``Strategy.start``; what is in flight at the end is abandoned.
        """
        if num_rounds < 1:
            raise RoundError(f"num_rounds must be at least 1, got {num_rounds}")
        check_timeout(timeout_s)
        train_config = train_config if train_config is not None else self.train_config
        if evaluate_config is None:
            evaluate_config = self.evaluate_config
        evaluate_fn = evaluate_fn if evaluate_fn is not None else self.evaluate_fn
        initial_arrays = initial_arrays if initial_arrays is not None else self.initial_arrays
        result, state, first = self._open(grid, initial_arrays, num_rounds, evaluate_fn, "versions")
        observer = grid.observer
        self._warn_if_concurrency_exceeds(len(grid.node_ids()))
        run = _Run(self, grid, result.arrays, first - 1, timeout_s, train_config)
        made: list[_Made] = []
        try:
            for version in range(first, num_rounds + 1):
                observer.on_round_start(version, num_rounds)
                began = time.perf_counter()
                arrays, state, train = run.next_version(state)
                server = {}
                if evaluate_fn is not None and (
                    version % self.evaluate_every == 0 or version == num_rounds
                ):
                    server = _call_evaluate_fn(evaluate_fn, version, arrays)
                run.send_evaluations(version, _round_config(evaluate_config, version))
                elapsed = time.perf_counter() - began
                made.append(_Made(version, train, server, elapsed, grid.now(), arrays, state))
                if len(made) > VERSIONS_AWAITING_EVALUATION:
                    run.give_up_evaluation(made[0].version, version)
                self._report(grid, result, made, run)
            run.abandon_training()
            run.finish_evaluations()
            self._report(grid, result, made, run)
        finally:
            run.abandon()
        result.strategy_state = state
        observer.on_result(result)
        return result

    def _warn_if_concurrency_exceeds(self, available: int) -> None:
        """Say so when fewer nodes are there than ``concurrency``: the run is less asynchronous."""
        if available < self.concurrency:
            log.warning(
                "%s: concurrency=%d, but only %d nodes are available now, so at most %d train "
                "at once and each version folds the replies of most of them (nearly "
                "synchronous); lower concurrency and buffer_size for a federation this small",
                type(self).__name__,
                self.concurrency,
                available,
                available,
            )

    def _report(self, grid: Grid, result: Result, made: list[_Made], run: _Run) -> None:
        """Record the versions made whose evaluation is in, in version order."""
        observer = grid.observer
        while made and run.evaluated(made[0].version):
            version = made.pop(0)
            evaluate = run.evaluation(version.version)
            record = RoundRecord(
                version.version,
                version.train,
                evaluate,
                version.server,
                version.wall_time_s,
                version.simulated_time_s,
            )
            result.rounds.append(record)
            observer.on_round(record)
            if version.state:  # before the model: a recorder keeps both together
                observer.on_strategy_state(version.version, version.state)
            observer.on_arrays(version.version, version.arrays)
            result.arrays = version.arrays


@dataclass(frozen=True, slots=True)
class _Made:
    """A version made, waiting for its federated evaluation before it is recorded."""

    version: int
    train: PhaseResult
    server: dict[str, object]
    wall_time_s: float
    simulated_time_s: float | None
    """The grid's clock when the version was made (None: a real transport)."""
    arrays: ArrayRecord
    state: ArrayRecord


class FedAsync(FedBuff):
    """Asynchronous federated optimization: each update makes a version at once (K = 1).

    The update of a node that trained on version tau, arriving at version t, is mixed in:
    ``x <- (1 - alpha_t) x + alpha_t x_new`` with ``alpha_t = alpha * s(t - tau)``.

    Args:
        alpha: the mixing weight of a fresh update, in (0, 1].
        concurrency, staleness, max_staleness, ...: as FedBuff's (its default staleness
            here too is ``polynomial(0.5)``); it takes no buffer_size, server learning
            rate or aggregation chain.
    """

    def __init__(self, *, alpha: float = 0.6, **options: Unpack[AsyncOptions]) -> None:
        if not (math.isfinite(alpha) and 0 < alpha <= 1):
            raise ConfigError(f"FedAsync's alpha must be in (0, 1], got {alpha!r}")
        mistaken = sorted(set(options) & {"buffer_size", "server_learning_rate", "aggregation"})
        if mistaken:
            raise ConfigError(
                f"FedAsync takes no {', '.join(mistaken)}: it makes a version of each update, "
                "mixed in with alpha; use FedBuff for a buffer, a server step or a chain"
            )
        self.alpha = alpha
        super().__init__(buffer_size=1, **options)
        _check_mixing(alpha, self.staleness(0), 0)

    def __repr__(self) -> str:
        return (
            f"FedAsync(alpha={self.alpha}, concurrency={self.concurrency}, "
            f"staleness={self.staleness!r}, max_staleness={self.max_staleness}, seed={self.seed})"
        )

    def contribution(
        self, current: ArrayRecord, trained: ArrayRecord, base: ArrayRecord, weight: float
    ) -> ArrayRecord:
        """The mixed model ``x + alpha s(tau) (x_new - x)``: ``(1 - alpha_t) x + alpha_t x_new``."""
        _check_mixing(self.alpha, weight, None)
        return ArrayRecord(
            (name, _step(x.numpy(), trained[name].numpy(), x.numpy(), self.alpha * weight))
            for name, x in current.items()
        )


class _Run:
    """One asynchronous run's bookkeeping: tasks in flight, the versions they trained from.

    It also keeps the federated evaluation of each version made: the evaluate tasks in
    flight, and the replies and failures of each version until it is recorded.
    """

    def __init__(
        self,
        strategy: FedBuff,
        grid: Grid,
        arrays: ArrayRecord,
        version: int,
        timeout_s: float | None,
        train_config: RoundConfig | None,
    ) -> None:
        self.strategy = strategy
        self.grid = grid
        self.arrays = arrays
        self.version = version
        self.timeout_s = timeout_s
        self.train_config = train_config
        self.rng = np.random.default_rng([strategy.seed, version])
        self.tasks: dict[str, tuple[int, int]] = {}
        """Message id -> (node id, the version its model is)."""
        self.models: dict[int, ArrayRecord] = {version: arrays}
        """The versions some task trains from, and the current one."""
        self.evals: dict[str, tuple[int, int]] = {}
        """Evaluate message id -> (node id, the version it evaluates)."""
        self.evaluated_by: dict[int, tuple[list[Message], list[Failure]]] = {}
        """The versions sent to evaluate: their valid replies and failures so far."""
        self.deadlines: dict[str, float] = {}
        """Message id (train or evaluate) -> when it times out, on ``clock()``."""

    def next_version(self, state: ArrayRecord) -> tuple[ArrayRecord, ArrayRecord, PhaseResult]:
        """Fold replies until K are in the buffer, then step: the model, state and record."""
        strategy = self.strategy
        buffer: list[Message] = []
        stale: list[int] = []
        failures: list[Failure] = []
        while len(buffer) < strategy.buffer_size:
            self._expire(failures)
            self._fill()
            if not self.tasks and not self.evals:
                continue  # the nodes waited for left again: wait anew
            reply = self.grid.receive_first([*self.tasks, *self.evals], self._wait_s())
            if reply is None:
                continue  # a task's deadline came first
            reply_to = reply.metadata.reply_to_message_id
            self.deadlines.pop(reply_to, None)
            if reply_to in self.evals:
                self._fold_evaluation(reply)
                continue
            node, trained_from = self.tasks.pop(reply_to)
            base = self.models[trained_from]
            self._forget(trained_from)
            tau = self.version - trained_from
            reason = strategy.check_train_reply(reply, base)
            limit = strategy.max_staleness
            if reason is None and limit is not None and tau > limit:
                reason = f"{tau} versions stale, over max_staleness={limit}"
            if reason is not None:
                self._set_aside(failures, Failure(node, reason), set_aside_level(self.grid, reply))
                continue
            weight = _weight(strategy.staleness, tau)
            arrays = strategy.contribution(
                self.arrays, reply.content.arrays(ARRAYS_KEY), base, weight
            )
            content = RecordDict(
                {ARRAYS_KEY: arrays, METRICS_KEY: reply.content.metrics(METRICS_KEY)}
            )
            buffer.append(Message(reply.metadata, content, None))
            stale.append(tau)
        version = self.version + 1
        new, metrics, state = strategy.aggregate_train(version, self.arrays, buffer, state)
        self._advance(new if new is not None else self.arrays)
        metrics = MetricRecord(
            {
                **metrics,
                "fedbuff.staleness-mean": float(np.mean(stale)),
                "fedbuff.staleness-max": max(stale),
            }
        )
        return self.arrays, state, PhaseResult(dict(metrics), len(buffer), tuple(failures))

    def _fill(self) -> None:
        """Send tasks with the current version to free nodes, up to ``concurrency`` in flight."""
        wanted = self.strategy.concurrency - len(self.tasks)
        if wanted <= 0:
            return
        picked = self._pick_free(wanted)
        if not picked and not self.tasks:
            self._wait_for_nodes()
            picked = self._pick_free(wanted)
        if not picked:
            return
        config = _round_config(self.train_config, self.version + 1)
        messages = self.strategy.train_messages(self.grid.run_id, picked, self.arrays, config)
        for message_id, message in zip(self.grid.send(messages), messages, strict=True):
            self.tasks[message_id] = (message.metadata.dst_node_id, self.version)
            self._set_deadline(message_id)

    def send_evaluations(self, version: int, config: ConfigRecord) -> None:
        """Send the new version to ``fraction_evaluate`` of the nodes, among the free ones."""
        fraction = self.strategy.fraction_evaluate
        if fraction == 0.0:
            return
        free = self._free_nodes()
        count = min(len(free), max(1, int(fraction * len(self.grid.node_ids()))))
        if count == 0:
            log.warning("version %d: no free node to evaluate it", version)
            return
        picked = [free[int(i)] for i in self.rng.choice(len(free), size=count, replace=False)]
        messages = self.strategy.evaluate_messages(self.grid.run_id, picked, self.arrays, config)
        for message_id, message in zip(self.grid.send(messages), messages, strict=True):
            self.evals[message_id] = (message.metadata.dst_node_id, version)
            self._set_deadline(message_id)
        self.evaluated_by[version] = ([], [])

    def clock(self) -> float:
        """The grid's clock: simulated seconds, or the wall's monotonic seconds."""
        now = self.grid.now()
        return time.monotonic() if now is None else now

    def _set_deadline(self, message_id: str) -> None:
        if self.timeout_s is not None:
            self.deadlines[message_id] = self.clock() + self.timeout_s

    def _wait_s(self) -> float | None:
        """How long to wait for a reply: until the earliest task's deadline (None: for ever)."""
        if not self.deadlines:
            return None
        return max(0.0, min(self.deadlines.values()) - self.clock())

    def _expire(self, failures: list[Failure]) -> None:
        """Abandon the tasks past their deadline; each is a failure of its version."""
        now = self.clock()
        late = [mid for mid, deadline in self.deadlines.items() if deadline <= now]
        if not late:
            return
        self.grid.abandon(late)
        why = f"no reply within {self.timeout_s:g} s"
        for message_id in late:
            del self.deadlines[message_id]
            if message_id in self.evals:
                node, version = self.evals.pop(message_id)
                self._evaluation_failed(
                    version, Failure(node, why), set_aside_level(self.grid, None)
                )
                continue
            node, trained_from = self.tasks.pop(message_id)
            self._forget(trained_from)
            self._set_aside(failures, Failure(node, why), set_aside_level(self.grid, None))

    def give_up_evaluation(self, version: int, newest: int) -> None:
        """Abandon ``version``'s evaluate tasks still in flight, as failures of its evaluation."""
        late = [mid for mid, (_, v) in self.evals.items() if v == version]
        if not late:
            return
        self.grid.abandon(late)
        why = f"not evaluated before version {newest} was made"
        for message_id in late:
            node, _ = self.evals.pop(message_id)
            self.deadlines.pop(message_id, None)
            self._evaluation_failed(version, Failure(node, why))

    def _fold_evaluation(self, reply: Message) -> None:
        """Keep an evaluate reply for its version, or count it as a failure with the reason."""
        node, version = self.evals.pop(reply.metadata.reply_to_message_id)
        reason = self.strategy.check_evaluate_reply(reply)
        if reason is None:
            self.evaluated_by[version][0].append(reply)
            return
        level = set_aside_level(self.grid, reply)
        self._evaluation_failed(version, Failure(node, reason), level)

    def _evaluation_failed(
        self, version: int, failure: Failure, level: int = logging.WARNING
    ) -> None:
        failures = self.evaluated_by[version][1]
        failures.append(failure)
        if len(failures) <= LOGGED_FAILURES:
            log.log(level, "version %d evaluate: set aside %s", version, failure)

    def evaluated(self, version: int) -> bool:
        """Whether every evaluate task of ``version`` is answered (or none was sent)."""
        return all(v != version for _, v in self.evals.values())

    def evaluation(self, version: int) -> PhaseResult | None:
        """The federated evaluation of ``version``, once it is in (None: none was sent)."""
        if version not in self.evaluated_by:
            return None
        kept, failures = self.evaluated_by.pop(version)
        metrics = self.strategy.aggregate_evaluate(version, kept)
        return PhaseResult(dict(metrics), len(kept), tuple(failures))

    def finish_evaluations(self) -> None:
        """Wait for the evaluate tasks still in flight (past their deadline: failures)."""
        while self.evals:
            self._expire([])
            if not self.evals:
                return
            reply = self.grid.receive_first(list(self.evals), self._wait_s())
            if reply is not None:
                self.deadlines.pop(reply.metadata.reply_to_message_id, None)
                self._fold_evaluation(reply)

    def _busy(self) -> set[int]:
        return {node for node, _ in (*self.tasks.values(), *self.evals.values())}

    def _free_nodes(self) -> list[int]:
        busy = self._busy()
        return sorted(node for node in self.grid.node_ids() if node not in busy)

    def _pick_free(self, wanted: int) -> list[int]:
        """Up to ``wanted`` distinct free nodes, drawn with the seeded rng.

        With nodes to spare (at least twice the busy and wanted ones) it draws from
        ``node_ids()`` and rejects busy and repeated picks: a few draws per pick, never a pass
        over all nodes (a reply comes in for each of them, and there may be millions).
        Otherwise it picks among the listed free ones. Same grid, same seed: same picks.
        """
        nodes, busy = self.grid.node_ids(), self._busy()
        if len(nodes) < 2 * (len(busy) + wanted):
            free = self._free_nodes()
            count = min(wanted, len(free))
            return [free[int(i)] for i in self.rng.choice(len(free), size=count, replace=False)]
        picked: dict[int, None] = {}  # insertion-ordered: the picks in the order drawn
        while len(picked) < wanted:
            node = nodes[int(self.rng.integers(len(nodes)))]
            if node not in busy:
                picked[node] = None
        return list(picked)

    def _wait_for_nodes(self) -> None:
        wanted = max(self.strategy.min_available_nodes, 1)
        try:
            self.grid.wait_for_nodes(wanted, self.strategy.wait_for_nodes_s)
        except RoundError as err:
            raise RoundError(
                f"{type(self.strategy).__name__} needs a free node to train, but {err}: add "
                "nodes or raise wait_for_nodes_s"
            ) from None

    def _set_aside(self, failures: list[Failure], failure: Failure, level: int) -> None:
        failures.append(failure)
        if len(failures) <= LOGGED_FAILURES:
            log.log(level, "version %d train: set aside %s", self.version + 1, failure)
        if len(failures) >= FAILURES_PER_TASK * self.strategy.concurrency:
            reasons = "; ".join(str(f) for f in failures[:5])
            raise RoundError(
                f"version {self.version + 1}: {len(failures)} replies set aside before "
                f"{self.strategy.buffer_size} valid ones: the nodes keep failing: {reasons}"
            )

    def _forget(self, version: int) -> None:
        """Drop version ``version``'s model once no task trains from it and it is not current."""
        if version != self.version and all(v != version for _, v in self.tasks.values()):
            self.models.pop(version, None)

    def _advance(self, arrays: ArrayRecord) -> None:
        """Make ``arrays`` the current version; the old one stays only while tasks need it."""
        old = self.version
        self.version += 1
        self.arrays = arrays
        self.models[self.version] = arrays
        self._forget(old)

    def abandon_training(self) -> None:
        """Let go of the train tasks still in flight: their replies are dropped when they come.

        Before the last evaluations are awaited: on the link, train replies let in and never
        taken would hold its window of replies.
        """
        if self.tasks:
            self.grid.abandon(list(self.tasks))
            for message_id in self.tasks:
                self.deadlines.pop(message_id, None)
            self.tasks.clear()

    def abandon(self) -> None:
        """Let go of every task still in flight (a run that ends early, by an error too)."""
        self.abandon_training()
        if self.evals:
            self.grid.abandon(list(self.evals))
            self.evals.clear()


def _weight(staleness: Callable[[int], float], tau: int) -> float:
    """``s(tau)``, which must be a finite number >= 0 (ConfigError names the function)."""
    value = staleness(tau)
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(
            f"the staleness function {staleness!r} gave {value!r} for staleness {tau}: it must "
            "give a finite number >= 0"
        )
    return float(value)


def _check_mixing(alpha: float, weight: float, tau: int | None) -> None:
    """ConfigError if ``alpha_t = alpha * s(tau)`` is over 1: the mix would step past x_new."""
    if alpha * weight > 1.0:
        at = "s(tau)" if tau is None else f"s({tau})"
        raise ConfigError(
            f"FedAsync's alpha * {at} = {alpha:g} * {weight:g} = {alpha * weight:g} is over 1: "
            "alpha_t must be in (0, 1] (Xie et al. 2019), or the mix steps past the new "
            "model; use a staleness function with values <= 1 (polynomial, hinge, constant)"
        )


def _step(x: np.ndarray, to: np.ndarray, since: np.ndarray, weight: float) -> np.ndarray:
    """``x + weight * (to - since)`` in float64, back in ``x``'s dtype (non-float: ``to``)."""
    if x.dtype.kind not in "fc":
        return np.array(to)
    wide = np.complex128 if x.dtype.kind == "c" else np.float64
    stepped = x.astype(wide) + weight * (to.astype(wide) - since.astype(wide))
    return stepped.astype(x.dtype)


def _check_counts(
    name: str, buffer_size: int, concurrency: int, max_staleness: int | None, every: int
) -> None:
    """ConfigError for a buffer, concurrency, staleness bound or evaluation period out of range."""
    if buffer_size < 1:
        raise ConfigError(f"{name}'s buffer_size must be at least 1, got {buffer_size}")
    if concurrency < buffer_size:
        raise ConfigError(
            f"{name}'s concurrency ({concurrency}) is below buffer_size ({buffer_size}): "
            "with fewer nodes training than a version folds, each version waits on nodes "
            "retraining; raise concurrency or lower buffer_size"
        )
    if max_staleness is not None and max_staleness < 0:
        raise ConfigError(
            f"{name}'s max_staleness must be 0 or more (or None), got {max_staleness}"
        )
    if every < 1:
        raise ConfigError(f"{name}'s evaluate_every must be at least 1, got {every}")


def _check_options(
    name: str,
    *,
    server_learning_rate: float,
    fraction_evaluate: float,
    max_weight: float | None,
    configs: Mapping[str, object],
    evaluate_fn: object,
    secure_aggregation: SecureAggregation | None,
) -> None:
    """ConfigError for a rate, share, cap, config or protocol FedBuff cannot run with."""
    if not (math.isfinite(server_learning_rate) and server_learning_rate > 0):
        raise ConfigError(
            f"server_learning_rate must be a finite number > 0, got {server_learning_rate}"
        )
    if not 0.0 <= fraction_evaluate <= 1.0:
        raise ConfigError(f"fraction_evaluate must be between 0 and 1, got {fraction_evaluate}")
    if max_weight is not None and not max_weight > 0:
        raise ConfigError(f"max_weight must be positive, got {max_weight}")
    for what, config in configs.items():
        if config is not None and not (callable(config) or isinstance(config, Mapping)):
            raise ConfigError(
                f"{what} must be a dict or a function of the version, got {type(config).__name__}"
            )
    if evaluate_fn is not None and not callable(evaluate_fn):
        raise ConfigError(f"evaluate_fn must be a function, got {type(evaluate_fn).__name__}")
    if secure_aggregation is not None:
        raise ConfigError(
            f"{name} cannot run secure aggregation: it needs a round's cohort to sum, and an "
            "asynchronous server folds each update alone as it arrives; use FedAvg with "
            "secure_aggregation"
        )


def _checked_staleness(staleness: object) -> Callable[[int], float]:
    """``staleness`` if it is a function of the staleness with ``s(0)`` finite and > 0."""
    if not callable(staleness):
        raise ConfigError(
            f"staleness must be a function of the staleness, got {type(staleness).__name__}: "
            "use polynomial(0.5), constant() or hinge(a, b) from pollinate.strategy"
        )
    fresh = _weight(staleness, 0)
    if fresh <= 0:
        raise ConfigError(
            f"the staleness function {staleness!r} gives s(0) = {fresh}: it must be > 0"
        )
    return staleness


def _checked_aggregation(name: str, aggregation: object, buffer_size: int) -> Aggregation:
    """The chain over the buffer, or ConfigError if it cannot work there."""
    chained = chain() if aggregation is None else aggregation
    if not isinstance(chained, Aggregation):
        raise not_a_chain(aggregation)
    if chained.poisson_sampling:
        raise ConfigError(
            f"{name} cannot take {chained.aggregator!r}: its privacy accounting assumes "
            "synchronous rounds of Poisson-sampled nodes, and an asynchronous server has "
            "neither; use FedAvg for differential privacy"
        )
    try:
        chained.check(buffer_size)
    except ConfigError as err:
        raise ConfigError(
            f"{name} gives the chain {buffer_size} updates per version (buffer_size), which "
            f"{chained!r} cannot work on: {err}; raise buffer_size"
        ) from None
    return chained
