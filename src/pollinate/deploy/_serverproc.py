"""A submitted run's ServerApp in a process of its own, driving the link's Grid over a pipe.

The link never imports a submitted app's code: a spawned child loads the ServerApp and runs
it on ``ProxyGrid``, whose calls (``node_ids``, ``send``, ``receive`` / ``receive_in_order``,
``wait_for_nodes``) cross to the link's ``LinkGrid``. Observer events (each round, the
model, the strategy's state) and ``pollinate`` log records come back the same way, so the
link's database, the run's log and ``pollinate ls`` see the run as before. Each frame is a
JSON header and, for messages and arrays, the wire format's own parts, sent from their
buffers as they are and decoded as views: no pickle. A broadcast's arrays cross once,
however many messages share them. The child writes the run's files itself
(``metrics.jsonl``, checkpoints, the model).

Whatever the child does, the link goes on: a process that exits, is killed, breaks the
protocol, or stays silent for ``max_idle_s`` ends its run as failed (``AppError`` naming
what happened), and the run-queue thread moves on to the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .. import errors, wire
from ..context import Context, UserConfigValue
from ..errors import AppError, PollinateError, RunStopped
from ..loader import load_object
from ..message import SERVER_NODE_ID, Message, Metadata
from ..records import Array, ArrayRecord, RecordDict
from ..server import (
    Grid,
    Result,
    ResumePoint,
    RoundRecord,
    RunObserver,
    ServerApp,
    run_server_app,
)

__all__ = ["STOP_GRACE_S", "ProxyGrid", "ServerProcess"]

log = logging.getLogger("pollinate.link")

STOP_GRACE_S = 5.0
"""How long a stopped ServerApp may take to end on its own before its process is ended."""
LOAD_S = 300.0
"""How long a ServerApp process may take to start and import the app, at least."""

_TICK_S = 0.25
_Parts = list[bytes | memoryview]


class _ProtocolError(Exception):
    """A frame from the child that does not follow the protocol."""


class _Channel:
    """Frames over one end of a pipe: a JSON header, then a payload of raw parts."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._sending = threading.Lock()

    def send(self, header: Mapping[str, Any], parts: Sequence[bytes | memoryview] = ()) -> None:
        """Send one frame; each part goes straight from its buffer (thread-safe)."""
        views = [memoryview(p) for p in parts]
        size = sum(v.nbytes for v in views)
        with self._sending:
            self.conn.send_bytes(json.dumps({**header, "size": size}).encode())
            for view in views:
                if view.nbytes:
                    self.conn.send_bytes(view)

    def receive(self) -> tuple[dict[str, Any], memoryview]:
        """The next frame: its header and its payload in one buffer (EOFError if closed)."""
        try:
            header = json.loads(self.conn.recv_bytes())
            size = header["size"]
        except (ValueError, KeyError, TypeError) as err:
            raise _ProtocolError(f"a frame header is not valid: {err}") from None
        if not isinstance(header, dict) or not isinstance(size, int) or size < 0:
            raise _ProtocolError("a frame header is not valid")
        buffer = bytearray(size)
        received = 0
        try:
            while received < size:
                received += self.conn.recv_bytes_into(buffer, received)
        except mp.BufferTooShort:
            raise _ProtocolError("a frame is longer than its header says") from None
        return header, memoryview(buffer)


# Arrays in frames ---------------------------------------------------------------------


def _holder(records: Mapping[str, ArrayRecord]) -> _Parts:
    """Array records as the parts of one wire-format message (the arrays are not copied)."""
    return wire.encode_parts(Message(Metadata(0, "", 0, 0, "arrays"), RecordDict(records)))


def _unhold(payload: memoryview) -> RecordDict:
    """The records ``_holder`` encoded, as views of ``payload``."""
    return wire.decode(payload).content


def _slim(messages: Iterable[Message]) -> tuple[_Parts, list[dict[str, Any]]]:
    """Messages as frame parts: every distinct Array once, then each message without arrays.

    A strategy sends the same global model to every node: it crosses the pipe once, and
    the link's messages share it again.
    """
    pool: dict[int, tuple[str, Array]] = {}
    slims: list[tuple[Message, dict[str, Any]]] = []
    for message in messages:
        kept, arrays = RecordDict(), dict[str, list[list[str]]]()
        for key, record in message.content.items():
            if isinstance(record, ArrayRecord):
                arrays[key] = [
                    [name, pool.setdefault(id(array), (str(len(pool)), array))[0]]
                    for name, array in record.items()
                ]
            else:
                kept[key] = record
        layout: dict[str, Any] = {"order": list(message.content), "arrays": arrays}
        slims.append((Message(message.metadata, kept, message.error), layout))
    parts = _holder({"pool": ArrayRecord(dict(pool.values()))})
    layouts = [{"size": _size(parts)}]
    for slim, layout in slims:
        encoded = wire.encode_parts(slim)
        parts += encoded
        layouts.append({**layout, "size": _size(encoded)})
    return parts, layouts


def _unslim(layouts: Any, payload: memoryview) -> list[Message]:
    """The messages ``_slim`` sent, their arrays shared views of ``payload``."""
    if not isinstance(layouts, list) or not layouts:
        raise _ProtocolError("a send without its messages' layout")
    sizes = [layout["size"] for layout in layouts]
    if not all(isinstance(s, int) and s >= 0 for s in sizes) or sum(sizes) != payload.nbytes:
        raise _ProtocolError("the messages' sizes do not add up to the frame's")
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    pool = _unhold(payload[: offsets[1]]).arrays("pool")
    messages = []
    for i, layout in enumerate(layouts[1:], start=1):
        slim = wire.decode(payload[offsets[i] : offsets[i + 1]])
        arrays = layout["arrays"]
        content = RecordDict(
            (
                key,
                ArrayRecord((name, pool[index]) for name, index in arrays[key])
                if key in arrays
                else slim.content[key],
            )
            for key in layout["order"]
        )
        messages.append(Message(slim.metadata, content, slim.error))
    return messages


def _size(parts: _Parts) -> int:
    return sum(memoryview(p).nbytes for p in parts)


# The link's side ----------------------------------------------------------------------


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
        self._channel: _Channel | None = None
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
        self._channel = _Channel(mine)
        self._process = context.Process(
            target=_child_main, args=(theirs,), daemon=True, name="pollinate-serverapp"
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
            self._send({**start, "resume": point}, _holder(records))
        header, payload = self._serve("done", self.max_idle_s)
        if header.get("same") is True and self._result is not None:
            return self._result
        try:
            return _result(header, payload)
        except _ProtocolError as err:
            raise self._broken(err) from None

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
                continue
            try:
                header, payload = self._channel.receive()
            except (EOFError, OSError):
                raise AppError(self._exit_reason()) from None
            except _ProtocolError as err:
                raise self._broken(err) from None
            op = header.get("op")
            if op == until:
                return header, payload
            try:
                self._handle(op, header, payload)  # the link's own errors pass through
            except _ProtocolError as err:
                raise self._broken(err) from None
            self._quiet_since = time.monotonic()

    def _broken(self, err: _ProtocolError) -> AppError:
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
            raise _ProtocolError(f"{op!r} before the run started")
        elif op == "event":
            self._event(header, payload)
        else:
            self._close_receives(header.get("close", []))
            try:
                answer, parts = self._call(self._grid, op, header, payload)
            except PollinateError as err:  # RunStopped, RoundError, ...: the ServerApp's to see
                answer, parts = {"error": type(err).__name__, "message": str(err)}, []
            self._send(answer, parts)

    def _call(
        self, grid: Grid, op: Any, header: dict[str, Any], payload: memoryview
    ) -> tuple[dict[str, Any], _Parts]:
        """Carry out one grid call on the link's grid; its answer and payload."""
        try:
            if op == "node_ids":
                return {"ok": grid.node_ids()}, []
            if op == "wait_for_nodes":
                count, timeout_s = int(header["count"]), float(header["timeout_s"])
                return {"ok": grid.wait_for_nodes(count, timeout_s)}, []
            if op == "send":
                return {"ok": grid.send(_unslim(header["messages"], payload))}, []
            if op == "receive":
                ids, timeout_s = header["ids"], header["timeout_s"]
                if not all(isinstance(i, str) for i in ids):
                    raise TypeError("message ids must be strings")
                self._handles += 1
                handle = self._handles
                wait = None if timeout_s is None else float(timeout_s)
                receive = grid.receive_in_order if header.get("ordered") else grid.receive
                self._receiving[handle] = receive(list(ids), wait)
                return {"ok": handle}, []
            if op == "next":
                return self._next(int(header["handle"]))
        except (KeyError, TypeError, ValueError, PollinateError) as err:
            if isinstance(err, PollinateError) and not isinstance(err, errors.WireError):
                raise
            raise _ProtocolError(f"a malformed {op!r} call: {err}") from None
        raise _ProtocolError(f"an unknown call {op!r}")

    def _next(self, handle: int) -> tuple[dict[str, Any], _Parts]:
        iterator = self._receiving.get(handle)
        if iterator is None:
            raise _ProtocolError(f"no receive {handle}")
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
                args = (int(header["round"]), _unhold(payload).arrays(name))
            elif name == "result":
                self._result = _result(header, payload)
                args = (self._result,)
            else:
                raise ValueError(f"unknown event {name!r}")
        except (KeyError, TypeError, ValueError) as err:
            raise _ProtocolError(f"a malformed event: {err}") from None
        for observer in self._observers:
            hook = getattr(observer, f"on_{name}", None)  # observers need not subclass
            if hook is not None:
                hook(*args)
        self._send({"ok": None})


_EVENTS = ("resume", "round_start", "round", "arrays", "strategy_state")


def _wanted(observers: Sequence[RunObserver]) -> list[str]:
    """The events some observer acts on (not RunObserver's no-op); the result always."""
    return [
        name
        for name in _EVENTS
        if any(
            getattr(type(o), f"on_{name}", None)
            not in (None, getattr(RunObserver, f"on_{name}", None))
            for o in observers
        )
    ]


def _result(header: dict[str, Any], payload: memoryview) -> Result:
    try:
        rounds = [RoundRecord.from_json(r) for r in header["rounds"]]
        return Result(_unhold(payload).arrays("arrays"), rounds)
    except (KeyError, TypeError, ValueError) as err:
        raise _ProtocolError(f"a malformed result: {err}") from None


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


_ERRORS: dict[str, type[PollinateError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, PollinateError)
}


def _failure(header: dict[str, Any]) -> PollinateError:
    """The error the ServerApp ended with, as the link raises it."""
    message = str(header.get("message", ""))
    details = header.get("traceback")
    if isinstance(details, str) and details:
        log.error("the ServerApp raised:\n%s", details.rstrip())
    return _ERRORS.get(str(header.get("error")), AppError)(message)


# The ServerApp's side -----------------------------------------------------------------


class _Parent:
    """The child's calls to the link: one at a time, each answered before the next."""

    def __init__(self, channel: _Channel) -> None:
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
            raise _ERRORS.get(answer["error"], PollinateError)(answer.get("message", ""))
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
        parts, layouts = _slim(messages)
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
            self.parent.call(header, _holder({"arrays": arrays}))

    def on_strategy_state(self, server_round: int, state: ArrayRecord) -> None:
        """The strategy's state after a round."""
        if "strategy_state" in self.wanted:
            header = {"op": "event", "name": "strategy_state", "round": server_round}
            self.parent.call(header, _holder({"strategy_state": state}))

    def on_result(self, result: Result) -> None:
        """The run's result."""
        self.result = result
        rounds = [r.to_json() for r in result.rounds]
        header = {"op": "event", "name": "result", "rounds": rounds}
        self.parent.call(header, _holder({"arrays": result.arrays}))


class _LogRelay(logging.Handler):
    """Sends the child's ``pollinate`` log records to the link, which logs them for the run."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        """Send the record's text (with its traceback, if any)."""
        try:
            header = {"op": "log", "name": record.name, "level": record.levelno}
            self.channel.send({**header, "message": self.format(record)})
        except Exception:
            self.handleError(record)


def _child_main(conn: Connection) -> None:
    """The ServerApp process: load the app, run it on a ProxyGrid, report how it ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the link's to handle
    # The link ends this process with its own if need be (daemon), but the ServerApp may
    # start processes of its own (a DataLoader's workers, say).
    mp.current_process().daemon = False
    _exit_with_the_link()
    channel = _Channel(conn)
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
        channel.send({"op": "done", "rounds": rounds}, _holder({"arrays": result.arrays}))


def _resume_point(point: dict[str, Any] | None, payload: memoryview) -> ResumePoint | None:
    if point is None:
        return None
    records = _unhold(payload)
    state = records.arrays("state") if "state" in records else None
    rounds = tuple(RoundRecord.from_json(r) for r in point["rounds"])
    return ResumePoint(records.arrays("arrays"), rounds, point["last_round"], state)


def _report(channel: _Channel, err: Exception) -> None:
    """Tell the link how the ServerApp failed; a bug's traceback goes to the run's log."""
    if isinstance(err, PollinateError):
        header = {"error": type(err).__name__, "message": str(err)}
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
