"""Strategy: the federated round loop, written once for every algorithm."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import numpy as np

from ..errors import ConfigError, RoundError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, ConfigValue, MetricRecord
from ..server import (
    Failure,
    Grid,
    PhaseResult,
    Result,
    RoundRecord,
    ServerApp,
    report_arrays,
    report_result,
    report_round,
    report_round_start,
    report_strategy_state,
    take_resume_point,
)
from ._classic import server_app_for

__all__ = ["EvaluateFn", "Strategy"]

log = logging.getLogger("pollinate.strategy")

EvaluateFn: TypeAlias = Callable[[int, ArrayRecord], "MetricRecord | Mapping[str, Any] | None"]
"""Centralized evaluation on the server: ``(server_round, arrays) -> metrics``."""


class Strategy(ABC):
    """Which nodes get what each round, and how their replies become the next model.

    Subclasses say how to configure and aggregate each phase; ``start`` runs the rounds:
    send, receive (streamed), set aside bad replies, aggregate, evaluate, report.
    """

    @abstractmethod
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """The train messages for this round."""

    @abstractmethod
    def aggregate_train(
        self, server_round: int, arrays: ArrayRecord, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord]:
        """Fold valid train replies (send order, as they arrive) into the model after ``arrays``."""

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """The evaluate messages for this round (empty to skip federated evaluation)."""

    @abstractmethod
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord:
        """Fold valid evaluate replies into one set of metrics."""

    @abstractmethod
    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Why a train reply must be set aside (None to keep it)."""

    @abstractmethod
    def check_evaluate_reply(self, reply: Message) -> str | None:
        """Why an evaluate reply must be set aside (None to keep it)."""

    @property
    def stateful(self) -> bool:
        """Whether the strategy keeps state between rounds (momentum, control variates)."""
        return False

    def state(self) -> ArrayRecord | None:
        """What a stateful strategy keeps between rounds, to resume with (None: nothing)."""
        return None

    def restore_state(self, state: ArrayRecord) -> None:
        """Take back what ``state()`` gave after the last completed round (a resumed run)."""
        return None

    def begin_run(self) -> None:
        """``start`` calls this first: forget any state an earlier run left (momentum...)."""
        return None

    min_train_replies: int = 1
    """Fewest valid train replies for the round to go on."""
    min_evaluate_replies: int = 1
    """Fewest valid evaluate replies for the round to go on."""

    def as_server_app(
        self,
        num_rounds: int,
        initial_arrays: ArrayRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> ServerApp:
        """A ServerApp that runs this strategy for ``num_rounds`` (the classic style).

        Without ``initial_arrays`` the first node is asked for its model's weights.
        """
        return server_app_for(self, num_rounds, initial_arrays, evaluate_fn)

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float | None = 3600.0,
        train_config: Mapping[str, ConfigValue] | None = None,
        evaluate_config: Mapping[str, ConfigValue] | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Run ``num_rounds`` of train, federated evaluate and centralized evaluate."""
        if num_rounds < 1:
            raise RoundError(f"num_rounds must be at least 1, got {num_rounds}")
        if not isinstance(initial_arrays, ArrayRecord):
            raise ConfigError(
                f"initial_arrays must be an ArrayRecord, got {type(initial_arrays).__name__}: "
                "wrap weights with ArrayRecord.from_numpy(list) or ArrayRecord.from_torch(sd)"
            )
        log.info("starting %s for %d rounds", self, num_rounds)
        self.begin_run()
        # A private copy: arrays built from torch tensors stay writable through torch, and the
        # user's model must not be able to change the global model behind the strategy's back.
        arrays = ArrayRecord((name, np.array(a.numpy())) for name, a in initial_arrays.items())
        result = Result(arrays)
        resume = take_resume_point()
        if resume is not None:  # an interrupted run: its completed rounds stand
            arrays = resume.arrays
            result.rounds.extend(resume.rounds)
            log.info("resuming after round %d of %d", resume.last_round, num_rounds)
            if resume.strategy_state is not None:
                self.restore_state(resume.strategy_state)
            elif self.stateful:
                log.warning(
                    "%s keeps state between rounds (server momentum, moments or control "
                    "variates) that a resumed run does not have: it starts afresh from round %d",
                    type(self).__name__,
                    resume.last_round + 1,
                )
        else:
            report_arrays(0, arrays)
            if evaluate_fn is not None:
                record = RoundRecord(0, server_metrics=_call_evaluate_fn(evaluate_fn, 0, arrays))
                result.rounds.append(record)
                report_round(record)
        first_round = 1 if resume is None else resume.last_round + 1
        for server_round in range(first_round, num_rounds + 1):
            report_round_start(server_round, num_rounds)
            began = time.perf_counter()
            arrays, train = self._train(grid, server_round, arrays, train_config, timeout)
            evaluate = self._evaluate(grid, server_round, arrays, evaluate_config, timeout)
            server = _call_evaluate_fn(evaluate_fn, server_round, arrays) if evaluate_fn else {}
            record = RoundRecord(server_round, train, evaluate, server, time.perf_counter() - began)
            result.rounds.append(record)
            report_round(record)
            state = self.state()
            if state is not None:  # before the model: a recorder keeps both together
                report_strategy_state(server_round, state)
            report_arrays(server_round, arrays)
            result.arrays = arrays  # the latest model only: earlier ones are not kept alive
        result.arrays = arrays
        report_result(result)
        return result

    def _train(
        self,
        grid: Grid,
        server_round: int,
        arrays: ArrayRecord,
        config: Mapping[str, ConfigValue] | None,
        timeout: float | None,
    ) -> tuple[ArrayRecord, PhaseResult]:
        messages = self.configure_train(
            server_round, arrays, _round_config(config, server_round), grid
        )
        tally = _Tally("train", server_round, self.min_train_replies)
        replies = _exchange(grid, messages, timeout)
        new_arrays, metrics = self.aggregate_train(
            server_round, arrays, tally.keep(replies, lambda r: self.check_train_reply(r, arrays))
        )
        tally.require_enough()
        return new_arrays if new_arrays is not None else arrays, tally.result(metrics)

    def _evaluate(
        self,
        grid: Grid,
        server_round: int,
        arrays: ArrayRecord,
        config: Mapping[str, ConfigValue] | None,
        timeout: float | None,
    ) -> PhaseResult | None:
        config_record = _round_config(config, server_round)
        messages = self.configure_evaluate(server_round, arrays, config_record, grid)
        if not messages:
            return None
        tally = _Tally("evaluate", server_round, self.min_evaluate_replies)
        replies = _exchange(grid, messages, timeout)
        metrics = self.aggregate_evaluate(
            server_round, tally.keep(replies, self.check_evaluate_reply)
        )
        tally.require_enough()
        return tally.result(metrics)


def _exchange(grid: Grid, messages: list[Message], timeout: float | None) -> Iterator[Message]:
    message_ids = grid.send(messages)
    return grid.receive_in_order(message_ids, timeout)


def _round_config(config: Mapping[str, ConfigValue] | None, server_round: int) -> ConfigRecord:
    record = ConfigRecord(config or {})
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


class _Tally:
    """Counts the replies of one phase, keeping the good ones and logging the rest."""

    def __init__(self, phase: str, server_round: int, minimum: int) -> None:
        self.phase = phase
        self.server_round = server_round
        self.minimum = minimum
        self.num_ok = 0
        self.failures: list[Failure] = []

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
            log.warning("round %d %s: set aside %s", self.server_round, self.phase, failure)

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
        if not isinstance(metrics, MetricRecord):
            raise ConfigError(
                f"the {self.phase} metrics aggregation returned {type(metrics).__name__}; "
                "it must return a MetricRecord"
            )
        return PhaseResult(dict(metrics), self.num_ok, tuple(self.failures))
