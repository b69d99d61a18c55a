"""Strategy: the federated round loop, written once for every algorithm."""

from __future__ import annotations

import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import numpy as np

from ..context import Context
from ..errors import ConfigError, RoundError
from ..message import ErrorCode, Message
from ..records import ArrayRecord, ConfigRecord, ConfigValue, MetricRecord, RecordDict
from ..server import (
    Failure,
    Grid,
    PhaseResult,
    Result,
    ResumePoint,
    RoundRecord,
    RunObserver,
    ServerApp,
)
from ._classic import initial_arrays_from_a_node
from ._secure import SecureAggregation, SecureRound

__all__ = [
    "EvaluateFn",
    "Strategy",
    "TrainPlan",
    "check_initial_arrays",
    "check_timeout",
    "one_server_app",
    "streams_replies",
]

log = logging.getLogger("pollinate.strategy")

RoundConfig: TypeAlias = "Mapping[str, ConfigValue] | Callable[[int], Mapping[str, ConfigValue]]"
"""A round's config for the nodes: a dict, or a function of the round number."""

EvaluateFn: TypeAlias = Callable[[int, ArrayRecord], "MetricRecord | Mapping[str, Any] | None"]
"""Centralized evaluation on the server: ``(server_round, arrays) -> metrics``."""


F = TypeVar("F", bound=Callable[..., Any])

UNUSED_METRIC = "selection.unused"
"""Train metric of an over-selected round: messages whose replies it did not wait for."""


@dataclass(frozen=True, slots=True)
class TrainPlan:
    """How a round collects its train replies (``Strategy.train_plan``)."""

    timeout_s: float | None
    """How long the round waits, on the grid's clock (simulated time in a clocked simulation)."""
    keep_first: int | None = None
    """Fold only the first this many valid replies to arrive (None: every reply, in send order)."""


def streams_replies(method: F) -> F:
    """Mark an ``aggregate_train`` / ``aggregate_evaluate`` that reads its replies only once.

    Such a method gets them as they arrive, one at a time, so a round holds about one reply
    at once (O(model) memory). Without the mark a method gets them as a list it may read
    again, for instance after ``super().aggregate_train(...)`` read it: the safe default
    for code written the Flower way, at the cost of holding every reply of the round.
    """
    method.__streams_replies__ = True  # type: ignore[attr-defined]
    return method


def _replies_for(method: Callable[..., Any], replies: Iterator[Message]) -> Iterable[Message]:
    """``replies`` as ``method`` may read them: streamed if it says so, else a list.

    Replies held in a list are snapshotted: in one process a reply's arrays may be the
    memory of a model the next node trains (a client that returns ``tensor.numpy()``).
    """
    if getattr(method, "__streams_replies__", False):
        return replies
    return [_snapshot(reply) for reply in replies]


def _snapshot(reply: Message) -> Message:
    """``reply`` with its arrays as they are now (copied only if their memory may change)."""
    content = RecordDict(
        (key, record.snapshot() if isinstance(record, ArrayRecord) else record)
        for key, record in reply.content.items()
    )
    return Message(reply.metadata, content, reply.error)


class Strategy(ABC):
    """Which nodes get what each round, and how their replies become the next model.

    Subclasses say how to configure and aggregate each phase; ``start`` runs the rounds:
    send, receive (streamed), set aside bad replies, aggregate, evaluate, report. What a
    strategy keeps from round to round (server moments, control variates) is a value,
    optax style: ``init_state(arrays)`` makes it, ``configure_train`` reads it and
    ``aggregate_train`` returns the next one; the object carries nothing from round to round.
    Entries named by ``growing_state`` grow a row each round (a DP accountant's rounds);
    resuming compares their shape without the row count, and ``resume_state`` may adjust
    or refuse the state a resumed run goes on with.
    """

    min_train_nodes: int = 1
    """Fewest nodes a round trains on: with fewer valid train replies the run stops."""
    min_evaluate_nodes: int = 1
    """Fewest nodes a round evaluates on: with fewer valid evaluate replies the run stops."""
    initial_arrays: ArrayRecord | None = None
    """The model ``start`` begins from when it is given none (None: ask a node for its own)."""
    train_config: RoundConfig | None = None
    """What ``start`` sends the training nodes each round when it is given no config."""
    evaluate_config: RoundConfig | None = None
    """What ``start`` sends the evaluating nodes each round when it is given no config."""
    evaluate_fn: EvaluateFn | None = None
    """Centralized evaluation ``start`` runs each round when it is given none."""
    secure_aggregation: SecureAggregation | None = None
    """A protocol that runs each train exchange so the server sees only the sum (None: plain)."""
    planned_rounds: tuple[int, int] | None = None
    """The first and last round ``start`` runs (None before it starts), for run-wide checks."""

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        """What the strategy keeps between rounds, before the first (empty: nothing)."""
        return ArrayRecord()

    def growing_state(self) -> frozenset[str]:
        """The state entries that grow a row each round (none by default)."""
        return frozenset()

    def resume_state(self, state: ArrayRecord, last_round: int) -> ArrayRecord:
        """The state a run interrupted after ``last_round`` goes on with (ConfigError: none)."""
        return state

    def stop_reason(self, server_round: int, state: ArrayRecord) -> str | None:
        """Why the run must end before ``server_round`` (None: go on), e.g. a spent DP budget.

        The run then ends cleanly with the rounds so far, and the reason is logged.
        """
        return None

    def min_train_replies(self, num_sent: int) -> int:
        """Fewest valid train replies a round that sent ``num_sent`` messages goes on with."""
        return self.min_train_nodes

    def train_plan(self, num_sent: int, timeout_s: float | None) -> TrainPlan:
        """How long a round waits for its ``num_sent`` train replies, and how many it folds.

        The default waits ``timeout_s`` for every reply and folds them in send order. A
        round deadline shortens the wait; over-selection folds only the first valid replies
        to arrive and abandons the rest (FedAvg's ``round_deadline_s``, ``over_selection``).
        """
        return TrainPlan(timeout_s)

    @abstractmethod
    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """The train messages for this round (``state``: what ``aggregate_train`` kept)."""

    @abstractmethod
    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """Fold valid train replies (in send order) into the model after ``arrays``.

        Returns the new model (None: keep ``arrays``), the metrics, and the state for the
        next round; ``state`` itself is left as it is. ``replies`` is a list that may be
        read more than once, or, for a method marked ``@streams_replies``, the replies as
        they arrive, to be read once.
        """

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """The evaluate messages for this round (empty to skip federated evaluation)."""

    @abstractmethod
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        """Fold valid evaluate replies into one set of metrics (as for ``aggregate_train``)."""

    @abstractmethod
    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Why a train reply must be set aside (None to keep it)."""

    @abstractmethod
    def check_evaluate_reply(self, reply: Message) -> str | None:
        """Why an evaluate reply must be set aside (None to keep it)."""

    def as_server_app(
        self,
        num_rounds: int,
        initial_arrays: ArrayRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> ServerApp:
        """A ServerApp that runs this strategy for ``num_rounds`` (the classic style).

        What it is not given comes from the strategy's own settings (``initial_arrays``,
        ``train_config``, ...); without initial arrays anywhere, a node is asked for its own.
        """
        app = ServerApp()

        @app.main()
        def main(grid: Grid, context: Context) -> Result:
            return self.start(grid, initial_arrays, num_rounds=num_rounds, evaluate_fn=evaluate_fn)

        return app

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
        """Run ``num_rounds`` of train, federated evaluate and centralized evaluate.

        ``train_config`` and ``evaluate_config`` go to the nodes each round with
        ``server-round``: a dict, or a function of the round that returns one (a learning
        rate that decays, say). Each argument left out (None) is taken from the strategy's
        attribute of the same name; with no ``initial_arrays`` there either, the node with
        the lowest id is asked for its model's weights (the classic API's way).

        Everything it uses comes in its arguments: the grid carries the run's observers
        (``grid.observer``, told of every round) and, for an interrupted run, the point to
        carry on from (``grid.resume_point``); ``run_server_app`` sets both.
        """
        if num_rounds < 1:
            raise RoundError(f"num_rounds must be at least 1, got {num_rounds}")
        check_timeout(timeout_s)
        # An argument left out falls back to the strategy's setting of the same name.
        if train_config is None:
            train_config = self.train_config
        if evaluate_config is None:
            evaluate_config = self.evaluate_config
        if evaluate_fn is None:
            evaluate_fn = self.evaluate_fn
        if initial_arrays is None:
            initial_arrays = self.initial_arrays
        result, state, first_round = self._open(grid, initial_arrays, num_rounds, evaluate_fn)
        observer, arrays = grid.observer, result.arrays
        for server_round in range(first_round, num_rounds + 1):
            reason = self.stop_reason(server_round, state)
            if reason is not None:
                log.warning(
                    "the run ends before round %d of %d: %s", server_round, num_rounds, reason
                )
                result.stop_reason = (
                    f"the run ended before round {server_round} of {num_rounds}: {reason}"
                )
                break
            observer.on_round_start(server_round, num_rounds)
            began = time.perf_counter()
            arrays, state, train = self._train(
                grid, server_round, arrays, state, train_config, timeout_s
            )
            evaluate = self._evaluate(grid, server_round, arrays, evaluate_config, timeout_s)
            server = _call_evaluate_fn(evaluate_fn, server_round, arrays) if evaluate_fn else {}
            elapsed = time.perf_counter() - began
            record = RoundRecord(server_round, train, evaluate, server, elapsed, grid.now())
            result.rounds.append(record)
            observer.on_round(record)
            if state:  # before the model: a recorder keeps both together
                observer.on_strategy_state(server_round, state)
            observer.on_arrays(server_round, arrays)
            result.arrays = arrays  # the latest model only: earlier ones are not kept alive
        result.arrays, result.strategy_state = arrays, state
        observer.on_result(result)
        return result

    def _open(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord | None,
        num_rounds: int,
        evaluate_fn: EvaluateFn | None,
        unit: str = "rounds",
    ) -> tuple[Result, ArrayRecord, int]:
        """A run's opening: a fresh start (round 0) or the resume point; the first round to run.

        Without initial arrays a fresh run asks a node for its own; ``planned_rounds`` is set.
        """
        if initial_arrays is not None:
            check_initial_arrays(initial_arrays)
        log.info("starting %s for %d %s", self, num_rounds, unit)
        observer, resume = grid.observer, grid.resume_point
        if resume is None:
            if initial_arrays is None:
                initial_arrays = initial_arrays_from_a_node(grid)
            result, state = self._begin(observer, initial_arrays, evaluate_fn, grid.now())
            first = 1
        else:
            result, state = self._resume(observer, resume, num_rounds)
            first = resume.last_round + 1
        self.planned_rounds = (first, num_rounds)
        return result, state, first

    def _begin(
        self,
        observer: RunObserver,
        initial_arrays: ArrayRecord,
        evaluate_fn: EvaluateFn | None,
        simulated_time_s: float | None = None,
    ) -> tuple[Result, ArrayRecord]:
        """A fresh run: round 0 (the initial model, centrally evaluated) and the first state.

        ``simulated_time_s``: the grid's clock at the start (None: a real transport).
        """
        # A private copy: arrays built from torch tensors stay writable through torch, and the
        # user's model must not be able to change the global model behind the strategy's back.
        arrays = ArrayRecord((name, np.array(a.numpy())) for name, a in initial_arrays.items())
        result = Result(arrays)
        observer.on_arrays(0, arrays)
        if evaluate_fn is not None:
            server = _call_evaluate_fn(evaluate_fn, 0, arrays)
            record = RoundRecord(0, server_metrics=server, simulated_time_s=simulated_time_s)
            result.rounds.append(record)
            observer.on_round(record)
        return result, self.init_state(arrays)

    def _resume(
        self, observer: RunObserver, resume: ResumePoint, num_rounds: int
    ) -> tuple[Result, ArrayRecord]:
        """An interrupted run: its completed rounds stand, its state is restored whole."""
        log.info("resuming after round %d of %d", resume.last_round, num_rounds)
        observer.on_resume(resume.last_round)
        fresh = self.init_state(resume.arrays)
        kept = resume.strategy_state
        growing = self.growing_state()
        if kept is not None and _layout(kept, growing) != _layout(fresh, growing):
            raise ConfigError(
                f"the run to resume kept strategy state {_layout(kept, growing)}, but {self!r} "
                f"keeps {_layout(fresh, growing)}: resume with the strategy the run started with"
            )
        # Without a kept state the first state follows from the model alone: exact after round 0.
        state = self.resume_state(fresh if kept is None else kept, resume.last_round)
        if kept is None and fresh and resume.last_round > 0:
            log.warning(
                "%s keeps state between rounds (server momentum, moments or control "
                "variates) that the resume point lacks: it starts afresh from round %d",
                type(self).__name__,
                resume.last_round + 1,
            )
        return Result(resume.arrays, list(resume.rounds)), state

    def _train(
        self,
        grid: Grid,
        server_round: int,
        arrays: ArrayRecord,
        state: ArrayRecord,
        config: RoundConfig | None,
        timeout_s: float | None,
    ) -> tuple[ArrayRecord, ArrayRecord, PhaseResult]:
        messages = self.configure_train(
            server_round, arrays, _round_config(config, server_round), grid, state
        )
        tally = _Tally("train", server_round, self.min_train_replies(len(messages)), grid)
        plan = self.train_plan(len(messages), timeout_s)
        kept: Iterator[Message]
        replies: Iterator[Message] = iter(())
        if self.secure_aggregation is None:
            message_ids = grid.send(messages)
            if plan.keep_first is None:
                replies = grid.receive_in_order(message_ids, plan.timeout_s)
                kept = tally.keep(replies, lambda r: self.check_train_reply(r, arrays))
            else:  # the first valid replies to arrive: arrival order, the rest abandoned
                replies = grid.receive(message_ids, plan.timeout_s)
                checked = tally.keep(replies, lambda r: self.check_train_reply(r, arrays))
                kept = itertools.islice(checked, plan.keep_first)
        else:  # the protocol's several exchanges, and one reply: the sum the server may see
            secure = self.secure_aggregation.train_round(
                grid, server_round, messages, arrays, plan.timeout_s
            )
            kept = iter(tally.keep_secure(secure))
        try:
            new_arrays, metrics, new_state = self.aggregate_train(
                server_round, arrays, _replies_for(self.aggregate_train, kept), state
            )
        except RoundError:
            tally.require_enough()  # too few replies is the cause to name (deadlines, dropouts)
            raise
        finally:
            _close(replies)  # replies not taken are abandoned: a grid drops them as they come
        tally.require_enough()
        if plan.keep_first is not None:
            unused = len(messages) - tally.num_ok - len(tally.failures)
            metrics = MetricRecord({**metrics, UNUSED_METRIC: unused})
        new_arrays = new_arrays if new_arrays is not None else arrays
        return new_arrays, new_state, tally.result(metrics)

    def _evaluate(
        self,
        grid: Grid,
        server_round: int,
        arrays: ArrayRecord,
        config: RoundConfig | None,
        timeout_s: float | None,
    ) -> PhaseResult | None:
        config_record = _round_config(config, server_round)
        messages = self.configure_evaluate(server_round, arrays, config_record, grid)
        if not messages:
            return None
        tally = _Tally("evaluate", server_round, self.min_evaluate_nodes, grid)
        replies = _exchange(grid, messages, timeout_s)
        kept = tally.keep(replies, self.check_evaluate_reply)
        metrics = self.aggregate_evaluate(server_round, _replies_for(self.aggregate_evaluate, kept))
        tally.require_enough()
        return tally.result(metrics)


def check_timeout(timeout_s: object) -> None:
    """ConfigError unless ``timeout_s`` is None or a number of seconds above 0 (inf: none)."""
    if timeout_s is None:
        return
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(
            f"timeout_s must be a number of seconds above 0 (or None: no timeout), got "
            f"{timeout_s!r}"
        )


def check_initial_arrays(arrays: object) -> None:
    """Refuse a model that is not an ArrayRecord, naming the ways to make one."""
    if not isinstance(arrays, ArrayRecord):
        raise ConfigError(
            f"initial_arrays must be an ArrayRecord, got {type(arrays).__name__}: "
            "wrap weights with ArrayRecord(dict), ArrayRecord.from_numpy(list) or "
            "pollinate.frameworks.torch.to_arrays(model)"
        )


def _layout(state: ArrayRecord, growing: frozenset[str]) -> dict[str, tuple[int, ...]]:
    """What a state must share with another to stand in for it: names and shapes.

    A ``growing`` entry's row count is no part of its layout.
    """
    return {name: a.shape[1:] if name in growing else a.shape for name, a in state.items()}


def _exchange(grid: Grid, messages: list[Message], timeout_s: float | None) -> Iterator[Message]:
    message_ids = grid.send(messages)
    return grid.receive_in_order(message_ids, timeout_s)


def _close(replies: Iterator[Message]) -> None:
    """Stop a grid's reply generator early, so it abandons the messages it did not yield."""
    close = getattr(replies, "close", None)
    if close is not None:
        close()


def _round_config(config: RoundConfig | None, server_round: int) -> ConfigRecord:
    values = config(server_round) if callable(config) else config
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(
            f"a round's config function must return a dict, got {type(values).__name__}"
        )
    record = ConfigRecord(values or {})
    record["server-round"] = server_round
    return record


def _call_evaluate_fn(fn: EvaluateFn, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
    metrics = fn(server_round, arrays)
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ConfigError(
            f"evaluate_fn must return a dict of metrics (or None), got {type(metrics).__name__}: "
            "return e.g. {'loss': loss, 'accuracy': accuracy}"
        )
    return dict(MetricRecord(metrics))


LOGGED_FAILURES = 5
"""Set-aside replies a round's phase logs one by one; the rest are counted in one line."""

MODELLED_FAILURES = frozenset({ErrorCode.NODE_UNAVAILABLE, ErrorCode.TIMEOUT})
"""Errors a simulated population makes on purpose (dropouts, nodes away, deadlines)."""


def set_aside_level(grid: Grid, reply: Message | None) -> int:
    """How loudly to log a reply set aside: WARNING, or INFO for a modelled failure.

    On a simulated clock (``grid.now()`` not None) dropouts, nodes that went away and
    deadlines are the population model at work, expected by the thousand: each is still in
    the round's record, but logged at INFO. ``reply`` None: a task given up at its deadline.
    """
    if grid.now() is None:
        return logging.WARNING
    if reply is None or (reply.error is not None and reply.error.code in MODELLED_FAILURES):
        return logging.INFO
    return logging.WARNING


class _Tally:
    """Counts the replies of one phase, keeping the good ones and logging the rest."""

    def __init__(self, phase: str, server_round: int, minimum: int, grid: Grid) -> None:
        self.phase = phase
        self.server_round = server_round
        self.minimum = minimum
        self.grid = grid
        self.num_ok = 0
        self.failures: list[Failure] = []
        self.loud = False  # a failure other than those a simulated population makes

    def keep(
        self, replies: Iterable[Message], check: Callable[[Message], str | None]
    ) -> Iterator[Message]:
        for reply in replies:
            reason = check(reply)
            if reason is None:
                self.num_ok += 1
                yield reply
                del reply  # hold no reply while the next one comes in: it may be a whole model
                continue
            failure = Failure(reply.metadata.src_node_id, reason)
            self.failures.append(failure)
            level = set_aside_level(self.grid, reply)
            self.loud = self.loud or level > logging.INFO
            if len(self.failures) <= LOGGED_FAILURES:
                log.log(level, "round %d %s: set aside %s", self.server_round, self.phase, failure)

    def keep_secure(self, secure: SecureRound) -> list[Message]:
        """Count a secure round's summed nodes as valid and its dropped nodes as failures."""
        self.num_ok += secure.count
        for failure in secure.failures:
            self.failures.append(failure)
            if len(self.failures) <= LOGGED_FAILURES:
                log.warning("round %d %s: set aside %s", self.server_round, self.phase, failure)
        return [] if secure.reply is None else [secure.reply]

    def log_unlisted(self) -> None:
        """One line for the failures past the first few, so a round of thousands stays readable."""
        unlisted = len(self.failures) - LOGGED_FAILURES
        if unlisted > 0:
            log.log(
                logging.WARNING if self.loud else logging.INFO,
                "round %d %s: set aside %d more (every one is in the round's record: "
                "result.rounds, metrics.jsonl)",
                self.server_round,
                self.phase,
                unlisted,
            )

    def require_enough(self) -> None:
        if self.num_ok >= self.minimum:
            return
        reasons = "; ".join(str(f) for f in self.failures[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        raise RoundError(
            f"round {self.server_round} {self.phase}: {self.num_ok} valid replies, the strategy "
            f"needs at least {self.minimum}; {len(self.failures)} set aside: {reasons}{more}"
        )

    def result(self, metrics: MetricRecord) -> PhaseResult:
        self.log_unlisted()
        if not isinstance(metrics, MetricRecord):
            raise ConfigError(
                f"the {self.phase} metrics aggregation returned {type(metrics).__name__}; "
                "it must return a MetricRecord"
            )
        return PhaseResult(dict(metrics), self.num_ok, tuple(self.failures))


def one_server_app(
    server_app: ServerApp | None,
    strategy: Strategy | None,
    num_rounds: int | None,
    initial_arrays: ArrayRecord | None,
    evaluate_fn: EvaluateFn | None,
) -> ServerApp:
    """The ServerApp given, or one made from a strategy and num_rounds (the classic style)."""
    if server_app is not None:
        classic = (strategy, num_rounds, initial_arrays, evaluate_fn)
        if any(value is not None for value in classic):
            raise ConfigError(
                "give either server_app, or strategy and num_rounds (with initial_arrays and "
                "evaluate_fn), not both"
            )
        return server_app
    if strategy is None or num_rounds is None:
        raise ConfigError("give a server_app, or a strategy and num_rounds")
    return strategy.as_server_app(num_rounds, initial_arrays, evaluate_fn)
