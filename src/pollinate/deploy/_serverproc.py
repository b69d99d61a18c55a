"""A submitted run's ServerApp in a process of its own, driving the link's Grid over a pipe.

The link never imports a submitted app's code: a spawned child loads the ServerApp and runs
it on ``ProxyGrid``, whose calls (``node_ids``, ``send``, ``receive`` / ``receive_in_order``,
``receive_first``, ``abandon``, ``now``, ``wait_for_nodes``) cross to the link's
``LinkGrid``. Observer events (each round, the model, the strategy's state) and
``pollinate`` log records come back the same way, so the link's database, the run's log
and ``pollinate ls`` see the run as before. Each frame is a
JSON header and, for messages and arrays, the wire format's own parts, sent from their
buffers as they are and decoded as views: no pickle. A broadcast's arrays cross once,
however many messages share them. The child writes the run's files itself
(``metrics.jsonl``, checkpoints, the model).

Whatever the child does, the link goes on: a process that exits, is killed, breaks the
protocol, or stays silent for ``max_idle_s`` ends its run as failed (``AppError`` naming
what happened), and the run-queue thread moves on to the next run.

This module is the link's end; ``_serverchild`` is the ServerApp's, and ``_pipe`` what
crosses between them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from .. import errors, wire
from ..context import UserConfigValue
from ..errors import AppError, PollinateError, RunStopped
from ..message import Message
from ..server import (
    Grid,
    Result,
    ResumePoint,
    RoundRecord,
    RunObserver,
)
from ._pipe import (
    EVENTS,
    Channel,
    Parts,
    ProtocolError,
    error_fields,
    error_from,
    hold,
    unhold,
    unslim,
)
from ._serverchild import child_main

__all__ = ["STOP_GRACE_S", "ServerProcess"]

log = logging.getLogger("pollinate.link")

STOP_GRACE_S = 5.0
"""How long a stopped ServerApp may take to end on its own before its process is ended."""
LOAD_S = 300.0
"""How long a ServerApp process may take to start and import the app, at least."""

_TICK_S = 0.25


class ServerProcess:
    """The link's end of one run's ServerApp process: starts it, serves it, ends it.

    ``load`` starts the process and waits until it has imported the ServerApp; ``run``
    hands it the Grid and returns its Result; ``close`` ends the process. While waiting on
    the child, ``stopping()`` (an operator's stop, the link shutting down) gives it
    ``STOP_GRACE_S`` to end at its next grid call, which raises RunStopped; a child that
    sends nothing for ``max_idle_s`` once it runs (``LOAD_S`` at least while it imports the
    app) is taken as hung. Either way its process is ended.
    """

    def __init__(self, max_idle_s: float, stopping: Callable[[], bool]) -> None:
        self.max_idle_s = max_idle_s
        self._stopping = stopping
        self._process: BaseProcess | None = None
        self._channel: Channel | None = None
        self._grid: Grid | None = None
        self._observers: Sequence[RunObserver] = ()
        self._receiving: dict[int, Iterator[Message]] = {}
        self._handles = 0
        self._result: Result | None = None
        self._quiet_since = time.monotonic()
        self._stop_seen: float | None = None

    def load(
        self,
        spec: str,
        folder: str,
        run_id: int,
        run_config: Mapping[str, UserConfigValue],
        out_dir: str | None,
    ) -> None:
        """Start the process and wait until it has loaded ``spec`` from ``folder``."""
        context = mp.get_context("spawn")
        mine, theirs = context.Pipe(duplex=True)
        self._channel = Channel(mine)
        self._process = context.Process(
            target=child_main, args=(theirs,), daemon=True, name="pollinate-serverapp"
        )
        self._process.start()
        theirs.close()
        setup = {
            "spec": spec,
            "folder": folder,
            "run_id": run_id,
            "run_config": dict(run_config),
            "out_dir": out_dir,
            "log_level": logging.getLogger("pollinate").getEffectiveLevel(),
        }
        self._send(setup)
        self._serve("ready", max(LOAD_S, self.max_idle_s))

    def run(
        self, grid: Grid, observers: Sequence[RunObserver], resume: ResumePoint | None
    ) -> Result:
        """Run the loaded ServerApp on ``grid``; ``observers`` hear its events here."""
        self._grid, self._observers = grid, observers
        start = {"op": "start", "events": _wanted(observers), "resume": None}
        if resume is None:
            self._send(start)
        else:
            records = {"arrays": resume.arrays}
            if resume.strategy_state is not None:
                records["state"] = resume.strategy_state
            point = {
                "last_round": resume.last_round,
                "rounds": [r.to_json() for r in resume.rounds],
            }
            self._send({**start, "resume": point}, hold(records))
        ended = threading.Event()
        self._watch_for_death(grid, ended)
        try:
            header, payload = self._serve("done", self.max_idle_s)
        finally:
            ended.set()
        if header.get("same") is True and self._result is not None:
            return self._result
        try:
            return _result(header, payload)
        except ProtocolError as err:
            raise self._broken(err) from None

    def _watch_for_death(self, grid: Grid, ended: threading.Event) -> None:
        """Stop ``grid`` if the process dies: a grid call the link is blocked in returns."""
        assert self._process is not None
        sentinel = self._process.sentinel

        def watch() -> None:
            while not ended.is_set():
                if wait([sentinel], timeout=_TICK_S) and not ended.is_set():
                    stop = getattr(grid, "stop", None)
                    if stop is not None:
                        stop("the ServerApp process ended")
                    return

        threading.Thread(target=watch, name="serverapp-sentinel", daemon=True).start()

    def close(self) -> None:
        """End the process (it has a moment to exit on its own) and close the pipe."""
        for iterator in self._receiving.values():
            _close(iterator)
        self._receiving.clear()
        process = self._process
        if process is not None:
            process.join(1.0)
            if process.is_alive():
                process.terminate()
                process.join(3.0)
            if process.is_alive():
                process.kill()
                process.join(3.0)
        if self._channel is not None:
            self._channel.conn.close()

    def _send(self, header: Mapping[str, Any], parts: Sequence[bytes | memoryview] = ()) -> None:
        assert self._channel is not None
        with contextlib.suppress(OSError):  # the process is gone: the next read says how
            self._channel.send(header, parts)

    def _serve(self, until: str, idle_s: float) -> tuple[dict[str, Any], memoryview]:
        """Answer the child's frames until one of kind ``until`` comes; raise how it ended.

        A child that sends nothing for ``idle_s`` is taken as hung.
        """
        assert self._channel is not None and self._process is not None
        self._quiet_since = time.monotonic()
        while True:
            self._check_time(idle_s)  # a busy child may be past its stop's grace, too
            if not self._channel.conn.poll(_TICK_S):
                if not self._process.is_alive():  # ended, though a process it forked may
                    raise AppError(self._exit_reason())  # hold the pipe open: no EOF comes
                continue
            try:
                header, payload = self._channel.receive()
            except (EOFError, OSError):
                raise AppError(self._exit_reason()) from None
            except ProtocolError as err:
                raise self._broken(err) from None
            op = header.get("op")
            if op == until:
                return header, payload
            try:
                self._handle(op, header, payload)  # the link's own errors pass through
            except ProtocolError as err:
                raise self._broken(err) from None
            self._quiet_since = time.monotonic()

    def _broken(self, err: ProtocolError) -> AppError:
        """End a child that broke the protocol; the error its run fails with."""
        self.close()
        return AppError(f"the ServerApp process broke the link's protocol ({err}): it was ended")

    def _check_time(self, idle_s: float) -> None:
        """End a child that was asked to stop and has not, or that went silent too long."""
        now = time.monotonic()
        if self._stopping():
            self._stop_seen = self._stop_seen or now
            if now - self._stop_seen >= STOP_GRACE_S:
                self.close()
                raise RunStopped(f"the ServerApp did not stop within {STOP_GRACE_S:g} s")
        elif now - self._quiet_since >= idle_s:
            self.close()
            raise AppError(
                f"the ServerApp did not call the link for {idle_s:g} s (it hangs, or "
                "works longer than the link's --max-idle between grid calls): it was ended"
            )

    def _exit_reason(self) -> str:
        """Why the child's end of the pipe closed: its exit code or signal."""
        assert self._process is not None
        self._process.join(3.0)
        code = self._process.exitcode
        self.close()
        if code is None:
            return "the ServerApp process closed its pipe to the link: it was ended"
        if code < 0:
            try:
                return f"the ServerApp process was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"the ServerApp process was killed by signal {-code}"
        return f"the ServerApp process exited with code {code}"

    def _handle(self, op: Any, header: dict[str, Any], payload: memoryview) -> None:
        """One frame that is not the awaited one: a log record, a grid call, an event."""
        if op == "log":
            _relay_log(header)
        elif op == "failed":
            raise _failure(header)
        elif self._grid is None:
            raise ProtocolError(f"{op!r} before the run started")
        elif op == "event":
            self._event(header, payload)
        else:
            self._close_receives(header.get("close", []))
            try:
                answer, parts = self._call(self._grid, op, header, payload)
            except PollinateError as err:  # RunStopped, RoundError, ...: the ServerApp's to see
                answer, parts = error_fields(err), []
            self._send(answer, parts)

    def _call(
        self, grid: Grid, op: Any, header: dict[str, Any], payload: memoryview
    ) -> tuple[dict[str, Any], Parts]:
        """Carry out one grid call on the link's grid; its answer and payload."""
        try:
            if op == "node_ids":
                return {"ok": list(grid.node_ids())}, []
            if op == "wait_for_nodes":
                count, timeout_s = int(header["count"]), self._wait_s(header["timeout_s"])
                if count < 0:
                    raise ValueError("wait_for_nodes takes a count >= 0")
                return {"ok": list(grid.wait_for_nodes(count, timeout_s))}, []
            if op == "send":
                return {"ok": grid.send(unslim(header["messages"], payload))}, []
            if op == "receive":
                ids, timeout_s = _ids(header["ids"]), header["timeout_s"]
                self._handles += 1
                handle = self._handles
                receive = grid.receive_in_order if header.get("ordered") else grid.receive
                self._receiving[handle] = receive(list(ids), self._wait_s(timeout_s))
                return {"ok": handle}, []
            if op == "next":
                return self._next(int(header["handle"]))
            if op == "now":
                return {"ok": grid.now()}, []
            if op == "receive_first":
                ids = _ids(header["ids"])
                reply = grid.receive_first(ids, self._wait_s(header["timeout_s"]))
                if reply is None:
                    return {"ok": None}, []
                return {"ok": True}, wire.encode_parts(reply)
            if op == "abandon":
                grid.abandon(_ids(header["ids"]))
                return {"ok": None}, []
        except (KeyError, TypeError, ValueError, OverflowError, PollinateError) as err:
            if isinstance(err, PollinateError) and not isinstance(err, errors.WireError):
                raise
            raise ProtocolError(f"a malformed {op!r} call: {err}") from None
        raise ProtocolError(f"an unknown call {op!r}")

    def _wait_s(self, value: Any) -> float:
        """How long a grid call the ServerApp asked for may wait: at most ``max_idle_s``.

        The link is blocked meanwhile, so a call with no timeout, or a very long one, must
        not hold the run (and the queue behind it) for longer than a hung ServerApp could.
        """
        seconds = _seconds(value)
        return self.max_idle_s if seconds is None else min(seconds, self.max_idle_s)

    def _next(self, handle: int) -> tuple[dict[str, Any], Parts]:
        iterator = self._receiving.get(handle)
        if iterator is None:
            raise ProtocolError(f"no receive {handle}")
        try:
            reply = next(iterator, None)
        except BaseException:
            del self._receiving[handle]
            raise
        if reply is None:
            del self._receiving[handle]
            return {"ok": None}, []
        return {"ok": True}, wire.encode_parts(reply)

    def _close_receives(self, handles: Any) -> None:
        """Close the receives the ServerApp dropped before their last reply."""
        for handle in handles if isinstance(handles, list) else []:
            iterator = self._receiving.pop(handle, None) if isinstance(handle, int) else None
            if iterator is not None:
                _close(iterator)

    def _event(self, header: dict[str, Any], payload: memoryview) -> None:
        """Tell the link's observers what the ServerApp's observer heard, then answer it."""
        try:
            name = header["name"]
            if name == "resume":
                args: tuple[Any, ...] = (int(header["round"]),)
            elif name == "round_start":
                args = (int(header["round"]), int(header["of"]))
            elif name == "round":
                args = (RoundRecord.from_json(header["record"]),)
            elif name in ("arrays", "strategy_state"):
                args = (int(header["round"]), unhold(payload).arrays(name))
            elif name == "result":
                self._result = _result(header, payload)
                args = (self._result,)
            else:
                raise ValueError(f"unknown event {name!r}")
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"a malformed event: {err}") from None
        for observer in self._observers:
            hook = getattr(observer, f"on_{name}", None)  # observers need not subclass
            if hook is not None:
                hook(*args)
        self._send({"ok": None})


def _wanted(observers: Sequence[RunObserver]) -> list[str]:
    """The events some observer acts on (not RunObserver's no-op); the result always."""
    return [
        name
        for name in EVENTS
        if any(
            getattr(type(o), f"on_{name}", None)
            not in (None, getattr(RunObserver, f"on_{name}", None))
            for o in observers
        )
    ]


def _result(header: dict[str, Any], payload: memoryview) -> Result:
    try:
        rounds = [RoundRecord.from_json(r) for r in header["rounds"]]
        records = unhold(payload)
        return Result(records.arrays("arrays"), rounds, records.arrays("strategy_state"))
    except (KeyError, TypeError, ValueError) as err:
        raise ProtocolError(f"a malformed result: {err}") from None


def _ids(value: Any) -> list[str]:
    """Message ids the child sent: a list of strings (else TypeError)."""
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise TypeError("message ids must be a list of strings")
    return value


def _seconds(value: Any) -> float | None:
    """A timeout the child sent: None, or finite seconds >= 0 (else ValueError, OverflowError)."""
    if value is None:
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a timeout must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _close(iterator: Iterator[Message]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _relay_log(header: dict[str, Any]) -> None:
    """Log the child's record here, on the run's thread: the run's log and the link's get it."""
    name, level, message = header.get("name"), header.get("level"), header.get("message")
    if not isinstance(name, str) or not name.startswith("pollinate"):
        name = "pollinate.server"
    level = level if isinstance(level, int) else logging.WARNING
    logging.getLogger(name).log(level, "%s", message)


def _failure(header: dict[str, Any]) -> PollinateError:
    """The error the ServerApp ended with, as the link raises it."""
    message = str(header.get("message", ""))
    details = header.get("traceback")
    if isinstance(details, str) and details:
        log.error("the ServerApp raised:\n%s", details.rstrip())
    return error_from({**header, "message": message}, AppError)
