"""The ServerApp's process: it loads the app, runs it on a ``ProxyGrid``, and reports back.

Every grid call, observer event and ``pollinate`` log record goes to the link over the pipe
(``_pipe``) and waits for its answer; the process ends when the link's process does.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Collection, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from .. import wire
from ..context import Context
from ..errors import PollinateError
from ..loader import load_object
from ..message import SERVER_NODE_ID, Message
from ..records import ArrayRecord, RecordDict
from ..server import (
    Grid,
    Result,
    ResumePoint,
    RoundRecord,
    RunObserver,
    ServerApp,
    run_server_app,
)
from ._pipe import Channel, Parts, error_fields, error_from, hold, slim, unhold

__all__ = ["ProxyGrid", "child_main"]


class _Parent:
    """The child's calls to the link: one at a time, each answered before the next."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._calling = threading.Lock()
        self.dropped: list[int] = []
        """Receives the ServerApp let go of early: closed with the next call."""

    def call(
        self, header: dict[str, Any], parts: Sequence[bytes | memoryview] = ()
    ) -> tuple[dict[str, Any], memoryview]:
        """Send a call and wait for its answer; the link's error is raised here."""
        with self._calling:
            dropped, self.dropped = self.dropped, []
            self.channel.send({**header, "close": dropped}, parts)
            answer, payload = self.channel.receive()
        if "error" in answer:
            raise error_from(answer, PollinateError)
        return answer, payload


class ProxyGrid(Grid):
    """The ServerApp's Grid in its own process: every call is carried out by the link's."""

    def __init__(self, parent: _Parent, run_id: int) -> None:
        self._parent = parent
        self._run_id = run_id

    @property
    def run_id(self) -> int:
        """The id of the run."""
        return self._run_id

    def node_ids(self) -> list[int]:
        """The nodes connected to the link now."""
        return list(self._parent.call({"op": "node_ids"})[0]["ok"])

    def wait_for_nodes(self, count: int, timeout_s: float) -> list[int]:
        """The link's nodes, once ``count`` are connected (RoundError after ``timeout_s``)."""
        header = {"op": "wait_for_nodes", "count": int(count), "timeout_s": float(timeout_s)}
        return list(self._parent.call(header)[0]["ok"])

    def send(self, messages: Iterable[Message]) -> list[str]:
        """Send messages through the link; their ids."""
        parts, layouts = slim(messages)
        return list(self._parent.call({"op": "send", "messages": layouts}, parts)[0]["ok"])

    def receive(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """The replies, one at a time, as the link's Grid yields them."""
        return self._receive(message_ids, timeout_s, ordered=False)

    def receive_in_order(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """The replies in send order: the link's Grid keeps the reordering, and its limits."""
        return self._receive(message_ids, timeout_s, ordered=True)

    def now(self) -> float | None:
        """The link's clock: None, wall time."""
        now = self._parent.call({"op": "now"})[0]["ok"]
        return None if now is None else float(now)

    def receive_first(
        self, message_ids: Collection[str], timeout_s: float | None = None
    ) -> Message | None:
        """The first reply of ``message_ids``, as the link's Grid gives it (None: none in time).

        The link caps each wait at its ``max_idle_s``; a longer wait is asked for again.
        """
        ids = [str(i) for i in message_ids]
        deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            header = {"op": "receive_first", "ids": ids, "timeout_s": wait}
            answer, payload = self._parent.call(header)
            if answer["ok"] is not None:
                return wire.decode(payload)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def abandon(self, message_ids: Collection[str]) -> None:
        """Let go of the messages on the link: their replies are dropped when they come."""
        self._parent.call({"op": "abandon", "ids": [str(i) for i in message_ids]})

    def _receive(
        self, message_ids: Sequence[str], timeout_s: float | None, *, ordered: bool
    ) -> Iterator[Message]:
        wait = None if timeout_s is None else float(timeout_s)
        ids = [str(i) for i in message_ids]
        header = {"op": "receive", "ids": ids, "timeout_s": wait, "ordered": ordered}
        handle = self._parent.call(header)[0]["ok"]
        finished = False
        try:
            while True:
                answer, payload = self._parent.call({"op": "next", "handle": handle})
                if answer["ok"] is None:
                    finished = True
                    return
                yield wire.decode(payload)
        finally:
            if not finished:
                self._parent.dropped.append(handle)


class _Relay(RunObserver):
    """The ServerApp's observer: each event the link's observers want goes to them, and waits.

    The model of each round crosses only when one of them keeps it (the link's database).
    """

    def __init__(self, parent: _Parent, wanted: Sequence[str]) -> None:
        self.parent = parent
        self.wanted = frozenset(wanted)
        self.result: Result | None = None

    def on_resume(self, last_round: int) -> None:
        """The run carries on after ``last_round``."""
        if "resume" in self.wanted:
            self.parent.call({"op": "event", "name": "resume", "round": last_round})

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """A round begins."""
        if "round_start" in self.wanted:
            header = {"op": "event", "name": "round_start", "round": server_round}
            self.parent.call({**header, "of": num_rounds})

    def on_round(self, record: RoundRecord) -> None:
        """A round ended."""
        if "round" in self.wanted:
            self.parent.call({"op": "event", "name": "round", "record": record.to_json()})

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """The model after a round."""
        if "arrays" in self.wanted:
            header = {"op": "event", "name": "arrays", "round": server_round}
            self.parent.call(header, hold({"arrays": arrays}))

    def on_strategy_state(self, server_round: int, state: ArrayRecord) -> None:
        """The strategy's state after a round."""
        if "strategy_state" in self.wanted:
            header = {"op": "event", "name": "strategy_state", "round": server_round}
            self.parent.call(header, hold({"strategy_state": state}))

    def on_result(self, result: Result) -> None:
        """The run's result."""
        self.result = result
        rounds = [r.to_json() for r in result.rounds]
        header = {"op": "event", "name": "result", "rounds": rounds}
        self.parent.call(header, _result_records(result))


class _LogRelay(logging.Handler):
    """Sends the child's ``pollinate`` log records to the link, which logs them for the run."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        """Send the record's text (with its traceback, if any)."""
        try:
            header = {"op": "log", "name": record.name, "level": record.levelno}
            self.channel.send({**header, "message": self.format(record)})
        except Exception:
            self.handleError(record)


def child_main(conn: Connection) -> None:
    """The ServerApp process: load the app, run it on a ProxyGrid, report how it ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the link's to handle
    # The link ends this process with its own if need be (daemon), but the ServerApp may
    # start processes of its own (a DataLoader's workers, say).
    mp.current_process().daemon = False
    _exit_with_the_link()
    channel = Channel(conn)
    setup, _ = channel.receive()
    logger = logging.getLogger("pollinate")
    logger.setLevel(setup["log_level"])
    logger.addHandler(_LogRelay(channel))
    logger.propagate = False
    parent = _Parent(channel)
    try:
        server_app = load_object(setup["spec"], ServerApp, setup["folder"], fresh=True)
        channel.send({"op": "ready"})
        start, payload = channel.receive()
        relay = _Relay(parent, start["events"])
        run_id = setup["run_id"]
        context = Context(run_id, SERVER_NODE_ID, {}, setup["run_config"], RecordDict())
        result = run_server_app(
            server_app,
            ProxyGrid(parent, run_id),
            context,
            out_dir=setup["out_dir"],
            observers=[relay],
            resume=_resume_point(start["resume"], payload),
        )
    except Exception as err:
        _report(channel, err)
        return
    if result is relay.result:
        channel.send({"op": "done", "same": True})
    else:
        rounds = [r.to_json() for r in result.rounds]
        channel.send({"op": "done", "rounds": rounds}, _result_records(result))


def _result_records(result: Result) -> Parts:
    """A Result's model and strategy state, as frame parts."""
    return hold({"arrays": result.arrays, "strategy_state": result.strategy_state})


def _resume_point(point: dict[str, Any] | None, payload: memoryview) -> ResumePoint | None:
    if point is None:
        return None
    records = unhold(payload)
    state = records.arrays("state") if "state" in records else None
    rounds = tuple(RoundRecord.from_json(r) for r in point["rounds"])
    return ResumePoint(records.arrays("arrays"), rounds, point["last_round"], state)


def _report(channel: Channel, err: Exception) -> None:
    """Tell the link how the ServerApp failed; a bug's traceback goes to the run's log."""
    if isinstance(err, PollinateError):
        header = error_fields(err)
    else:
        header = {
            "error": "AppError",
            "message": f"{type(err).__name__}: {err}",
            "traceback": "".join(traceback.format_exception(err)),
        }
    with contextlib.suppress(OSError):  # the link is gone
        channel.send({"op": "failed", **header})


def _exit_with_the_link() -> None:
    """End this process as soon as the link's process ends (killed or not)."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(70)

    threading.Thread(target=watch, name="serverapp-watch", daemon=True).start()
