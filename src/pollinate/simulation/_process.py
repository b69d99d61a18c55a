"""The process backend: a pool of worker processes, each running one node at a time.

Work crosses to the workers in pollinate's wire format over pipes: arrays travel as raw
buffers and are decoded without copying, never pickled. Each worker keeps the last model
(ArrayRecord) it was sent under each content key, and the parent sends a record that holds
the very same arrays only once: a round's model crosses the pipe once per worker, not once
per node; the run config likewise. A worker holds up to ``PIPELINE`` tasks, so it starts the
next one without waiting for the parent, and returns each model-sized reply through a
shared buffer (``_shared``) rather than the pipe, with the task's measured compute time
(``TaskResult.compute_s``) in the frame's keys field, which replies do not otherwise use. A
worker loads the app and runs its
warm-up before it says it is ready. A worker that dies or overruns the round's deadline is
replaced (without stalling the others); its node's task becomes an error reply, and a task
it held but had not started goes to another worker. A run its caller closes early (a strategy
with over-selection has the replies it wants) hands out nothing more and drains the tasks
already handed out, discarding their results, so the workers stay; one still busy at the
run's deadline or ``DRAIN_GRACE_S`` after the close, whichever comes first, is replaced.

With ``num_gpus`` above 0 each worker holds a GPU slot (``_gpus.worker_gpus``): it starts
with that slot as its ``CUDA_VISIBLE_DEVICES``, so it sees only its GPUs, and its tasks'
contexts (and its warm-up's) name ``cuda:0`` as their device; a replacement worker takes
over its predecessor's slot. The slots cap the worker count as the cores do.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import MappingProxyType

from .. import wire
from ..client import ClientApp
from ..context import Context, UserConfig
from ..errors import AppError, ConfigError, PollinateError
from ..message import ErrorCode, Message
from ..records import ArrayRecord, RecordDict
from ._backend import Backend, ClientAppSource, Task, TaskResult, register_backend, timeout_result
from ._devices import CPU, GPU, with_device
from ._gpus import ENV, find_gpus, num_gpus_problem, share_phrase, worker_gpus
from ._shared import MAX_SHARED_BYTES, MIN_SHARED_BYTES, SHARED, ReplyArea, send_fd

__all__ = ["ProcessBackend"]

log = logging.getLogger("pollinate.simulation")

PIPELINE = 2
"""Tasks a worker holds at once: the one it runs and the next, waiting in its socket."""
_HEADER = struct.Struct("<QQQQQQ")
_ON_SOCKET, _IN_AREA, _NEW_AREA = 0, 1, 2  # where a frame's bytes are (see _send_frame)
_HELD_RUN_CONFIG = 1  # a frame flag: the context's run config is the one the worker holds
_KEY_SEPARATOR = b"\x00"
_COMPUTE = struct.Struct("<d")  # a reply frame's keys field: the task's compute seconds
_READY = b"ready"
DRAIN_GRACE_S = 2.0
"""How long a run closed early waits for its workers' unwanted results (less if its deadline
comes sooner); a worker still busy then is replaced instead.

About what replacing a worker costs (a fresh interpreter, the app's import and warm-up):
0.3-0.4 s for a numpy app, 1.4-1.9 s for the torch examples (quickstart, cross-device-mnist)
on a loaded 2-core machine. Waiting longer for results nobody reads would cost more than
the replacement it saves.
"""
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_Payload = tuple[str | None, str | None, bytes | None, bytes | None]
_Frame = tuple[memoryview, memoryview, memoryview, int]
_ENVIRON_LOCK = threading.Lock()


@register_backend
class ProcessBackend(Backend):
    """Runs tasks in parallel on ``num_workers`` processes with ``threads_per_worker`` each.

    The defaults split the machine's cores evenly: one thread per worker, one worker per core.
    ``ready_timeout_s`` bounds how long a worker may take to import the ClientApp.
    ``num_gpus`` is each worker's share of a GPU (0: none); the GPUs also cap the workers.
    """

    name = "process"

    def __init__(
        self,
        num_workers: int | None = None,
        threads_per_worker: int = 1,
        ready_timeout_s: float = 300.0,
        num_gpus: float = 0.0,
    ) -> None:
        if threads_per_worker < 1:
            raise ConfigError(f"threads-per-worker must be at least 1, got {threads_per_worker}")
        if num_workers is not None and num_workers < 1:
            raise ConfigError(f"num-workers must be at least 1, got {num_workers}")
        problem = num_gpus_problem(num_gpus)
        if problem is not None:
            raise ConfigError(problem)
        cores = os.cpu_count() or 1
        self.num_workers = num_workers or max(1, cores // threads_per_worker)
        self.gpu_slots = worker_gpus(num_gpus, find_gpus()) if num_gpus > 0 else ()
        if self.gpu_slots and len(self.gpu_slots) < self.num_workers:
            log.info(
                "%d workers: the GPUs hold that many at %s each",
                len(self.gpu_slots),
                share_phrase(num_gpus),
            )
            self.num_workers = len(self.gpu_slots)
        self.threads_per_worker = threads_per_worker
        self.ready_timeout_s = ready_timeout_s
        self._payload: _Payload | None = None
        self._workers: list[_Worker] = []
        self._closed = False

    def launch(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Spawn the workers (no more than there are nodes) without waiting for them.

        They import the app and warm up while the caller goes on with its own start-up
        (importing the ServerApp, say); ``start`` with the same source then only waits.
        """
        self._payload = app.for_workers()
        count = self.num_workers if num_nodes is None else min(self.num_workers, num_nodes)
        slots = self.gpu_slots or (None,) * count
        self._workers = [self._spawn(slot) for slot in slots[:count]]

    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Start the workers, unless ``launch`` did for this app, and wait until each is ready."""
        if not self._workers or self._payload != app.for_workers():
            for worker in self._workers:  # launched for another app
                worker.stop()
            self.launch(app, num_nodes)
        try:
            for worker in self._workers:
                worker.wait_ready(self.ready_timeout_s)
        except BaseException:
            self.close()
            raise

    @property
    def worker_count(self) -> int:
        """How many worker processes the pool holds now."""
        return len(self._workers)

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Hand tasks to workers in order, up to ``PIPELINE`` each; yield results as they come.

        A worker holds its next task before it finishes the current one, so it never waits
        for this process to be scheduled, receive and hand out; a task queued behind a node
        that overruns the deadline times out with it.
        """
        if self._closed:
            raise PollinateError("the process backend is closed")
        queue = deque(enumerate(tasks))
        sent: dict[Connection, tuple[_Worker, deque[tuple[int, Task]]]] = {}
        starting = {w.conn: w for w in self._workers if not w.ready}
        working = [w for w in self._workers if w.ready]
        try:
            while queue or sent:
                if _past(deadline):
                    break
                self._hand_out(queue, working, sent, starting)
                ready = wait([*sent, *starting], timeout=self._wait_s(deadline, starting))
                self._check_starting(starting, ready)
                results = []
                for conn in ready:
                    if conn in starting:
                        fresh = starting.pop(conn)
                        fresh.confirm_ready()
                        working.append(fresh)
                        continue
                    worker, pending = sent[conn]  # type: ignore[index]
                    index, task = pending.popleft()
                    results.append(worker.receive(index, task))
                    if worker.lost:  # what it held never ran: it goes to another worker
                        queue.extendleft(reversed(pending))
                        pending.clear()
                    if not pending:
                        del sent[conn]  # type: ignore[arg-type]
                        if not worker.alive:
                            if worker in working:  # else found dead by _hand_out already
                                working.remove(worker)
                            fresh = self._replace(worker)
                            starting[fresh.conn] = fresh
                # Workers get their next tasks before the caller sees these results: they
                # compute while the caller aggregates, instead of waiting on it.
                if not _past(deadline):
                    self._hand_out(queue, working, sent, starting)
                yield from results
            for index, task in [*queue, *(t for _, pending in sent.values() for t in pending)]:
                yield timeout_result(index, task)
        except GeneratorExit:  # closed early: keep the workers whose work ends in time
            self._drain(sent, deadline)
            raise
        finally:
            # Work whose result nobody will read must not answer into a later round.
            for worker, _ in sent.values():
                self._replace(worker)

    def _drain(
        self,
        sent: dict[Connection, tuple[_Worker, deque[tuple[int, Task]]]],
        deadline: float | None,
    ) -> None:
        """Read and discard the results of tasks handed out, for the grace or until ``deadline``.

        A drained worker leaves ``sent``; one that died meanwhile is replaced. What is left
        in ``sent`` at the limit is still busy, for ``run`` to replace.
        """
        limit = drain_limit(deadline)
        while sent:
            ready = wait(list(sent), timeout=_remaining(limit))
            if not ready:
                return
            for conn in ready:
                worker, pending = sent[conn]  # type: ignore[index]
                worker.receive(*pending.popleft())
                if worker.lost or not pending:
                    del sent[conn]  # type: ignore[arg-type]
                    if worker.lost or not worker.alive:
                        self._replace(worker)

    def _wait_s(self, deadline: float | None, starting: dict[Connection, _Worker]) -> float | None:
        """How long to wait: until the round's deadline or a replacement's time to be ready."""
        limits = [w.spawned_at + self.ready_timeout_s - time.monotonic() for w in starting.values()]
        remaining = _remaining(deadline)
        if remaining is not None:
            limits.append(remaining)
        return max(0.0, min(limits)) if limits else None

    def _check_starting(self, starting: dict[Connection, _Worker], ready: Sequence[object]) -> None:
        """A replacement not ready within ``ready_timeout_s`` ends the run, as at start."""
        for conn, worker in starting.items():
            if conn not in ready and time.monotonic() - worker.spawned_at > self.ready_timeout_s:
                worker.stop()
                raise AppError(
                    "a replacement worker process did not load the ClientApp within "
                    f"{self.ready_timeout_s:g} s"
                )

    def _hand_out(
        self,
        queue: deque[tuple[int, Task]],
        working: list[_Worker],
        sent: dict[Connection, tuple[_Worker, deque[tuple[int, Task]]]],
        starting: dict[Connection, _Worker],
    ) -> None:
        """Send queued tasks in order: one to each worker holding none, then a second each.

        A worker found dead while holding nothing is replaced; one still holding tasks is
        left for ``run`` to find out through its socket (its next reply, or the end of it).
        """
        for depth in range(1, PIPELINE + 1):
            for worker in list(working):
                if not queue:
                    return
                held = sent.get(worker.conn)
                if held is not None and len(held[1]) >= depth:
                    continue
                index, task = queue.popleft()
                if worker.send(task):
                    if held is None:
                        held = sent[worker.conn] = (worker, deque())
                    held[1].append((index, task))
                    continue
                queue.appendleft((index, task))  # it died: the task waits for another
                working.remove(worker)
                if held is None:
                    fresh = self._replace(worker)
                    starting[fresh.conn] = fresh

    def close(self) -> None:
        """Stop every worker; later calls to run() fail."""
        self._closed = True
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def _spawn(self, gpu: str | None) -> _Worker:
        assert self._payload is not None
        return _Worker(self._payload, self.threads_per_worker, gpu)

    def _replace(self, worker: _Worker) -> _Worker:
        """Stop ``worker`` and start a new one in its slot (ready later: see confirm_ready)."""
        worker.stop()
        if self._closed:
            return worker
        fresh = self._spawn(worker.gpu)
        if worker in self._workers:
            self._workers[self._workers.index(worker)] = fresh
        return fresh


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """Set ``name=value`` in os.environ (None: leave it) while a worker starts, then restore it.

    A spawned worker copies the environment when it starts, before it imports anything, so
    a framework in it reads the variable before it could touch a GPU.
    """
    if value is None:
        yield
        return
    with _ENVIRON_LOCK:
        before = os.environ.get(name)
        os.environ[name] = value
        try:
            yield
        finally:
            if before is None:
                del os.environ[name]
            else:
                os.environ[name] = before


def drain_limit(deadline: float | None) -> float:
    """When a run closed early stops draining: ``DRAIN_GRACE_S`` from now, or its deadline."""
    grace = time.monotonic() + DRAIN_GRACE_S
    return grace if deadline is None else min(grace, deadline)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Worker:
    """One worker process and the parent's end of its pipe; ``gpu`` is its GPU slot, if any."""

    def __init__(self, payload: _Payload, threads: int, gpu: str | None = None) -> None:
        self.gpu = gpu
        self.device = CPU if gpu is None else GPU
        self.spawned_at = time.monotonic()
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe(duplex=True)
        self.pickled_from_main = payload[2] is not None and b"__main__" in payload[2]
        self.process: BaseProcess = context.Process(
            target=_worker_main,
            args=(child, payload, threads, self.device, list(sys.path)),
            daemon=True,
            name="pollinate-worker",
        )
        with _environment(ENV, gpu):
            self.process.start()
        child.close()
        self.ready = False
        self.sent = SentArrays()
        self.sent_run_config: UserConfig | None = None
        self.replies = [ReplyArea() for _ in range(PIPELINE)]
        self.lost = False

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def wait_ready(self, timeout_s: float) -> None:
        if not self.conn.poll(timeout_s):
            self.stop()
            raise AppError(f"a worker process did not load the ClientApp within {timeout_s:g} s")
        self.confirm_ready()

    def confirm_ready(self) -> None:
        try:
            answer = self.conn.recv_bytes()
        except (EOFError, OSError):
            self.process.join(5)
            hint = (
                ": a script that runs a simulation with the process backend must do so under "
                '`if __name__ == "__main__":`'
                if self.pickled_from_main
                else ""
            )
            raise AppError(
                f"a worker process exited (code {self.process.exitcode}) while loading the "
                f"ClientApp{hint}"
            ) from None
        if answer != _READY:
            self.stop()
            raise AppError(f"a worker process could not load the ClientApp: {answer.decode()}")
        self.ready = True

    def send(self, task: Task) -> bool:
        message, cached = self.sent.strip(task.message)
        context, flags = task.context, 0
        if context.run_config is self.sent_run_config:  # the run's one shared mapping
            context, flags = dataclasses.replace(context, run_config={}), _HELD_RUN_CONFIG
        self.sent_run_config = task.context.run_config
        try:
            _send_frame(
                self.conn,
                wire.encode_parts(message),
                wire.encode_context(with_device(context, self.device)),
                _KEY_SEPARATOR.join(key.encode() for key in cached),
                flags=flags,
            )
        except OSError:
            return False
        return True

    def receive(self, index: int, task: Task) -> TaskResult:
        try:
            reply, context, timing, _ = _recv_frame(self.conn, self.replies)
        except (EOFError, OSError):
            self.lost = True
            self.process.join(1)
            reason = (
                f"the worker process running node {task.context.node_id} died "
                f"(exit code {self.process.exitcode})"
            )
            log.warning(reason)
            return TaskResult(index, task.message.reply_error(ErrorCode.NODE_UNAVAILABLE, reason))
        # The state is decoded from its own copy: kept across rounds, it must not pin the
        # buffer that also holds this reply's (model-sized) arrays.
        state = wire.decode_context(bytes(context)).state if len(context) else None
        compute_s = _COMPUTE.unpack(timing)[0] if len(timing) == _COMPUTE.size else None
        return TaskResult(index, wire.decode(reply), state, compute_s)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(3)
        self.conn.close()
        for area in self.replies:
            area.close()


class SentArrays:
    """The ArrayRecords one worker holds, by content key: the last one it was sent under each.

    The parent keeps a shallow copy of each record it sent (the same Array objects, which
    are read-only); the worker keeps the decoded record. A later message whose record holds
    the very same Array objects, in the same order, goes with that record emptied and its key
    named as cached, and the worker puts its own copy back: one model per worker per round.
    """

    def __init__(self) -> None:
        self._records: dict[str, ArrayRecord] = {}

    def strip(self, message: Message) -> tuple[Message, list[str]]:
        """``message`` with the records the worker holds emptied, and their keys (parent side)."""
        cached = []
        for key, record in message.content.array_records.items():
            held = self._records.get(key)
            if held is not None and _same_arrays(held, record):
                cached.append(key)
            else:
                self._records[key] = ArrayRecord(record)
        return _emptied(message, cached), cached

    def restore(self, message: Message, cached: list[str]) -> Message:
        """``message`` with the held records back under ``cached`` keys (worker side).

        Each node gets its own copy of a held record (sharing the read-only arrays), so a
        node that edits the record cannot change what the next one receives.
        """
        for key, record in message.content.array_records.items():
            if key in cached:
                message.content[key] = ArrayRecord(self._records[key])
            else:
                self._records[key] = ArrayRecord(record)
        return message


def _emptied(message: Message, keys: Iterable[str]) -> Message:
    """``message`` with the array records under ``keys`` emptied (itself if there are none)."""
    keys = list(keys)
    if not keys:
        return message
    content = RecordDict(message.content)
    for key in keys:
        content[key] = ArrayRecord()
    return Message(message.metadata, content, message.error)


def _same_arrays(held: ArrayRecord, record: ArrayRecord) -> bool:
    """Whether ``record`` holds exactly ``held``'s Array objects, under the same names."""
    return list(held) == list(record) and all(held[k] is record[k] for k in record)


def _send_frame(
    conn: Connection,
    message_parts: list[bytes | memoryview],
    context: bytes,
    keys: bytes = b"",
    area: tuple[int, ReplyArea] | None = None,
    flags: int = 0,
) -> None:
    """Send a message's parts, a context and the cached keys as one frame, unjoined.

    A small header says the frame's size, where the message ends, the keys' size, where
    the bytes are (next on the socket, each non-empty part as it is, arrays straight from
    their buffers; or, for a big frame given an ``area``, in that shared reply buffer, whose
    slot it names) and the ``flags``.
    """
    parts = [memoryview(p) for p in [*message_parts, context, keys]]
    message_size = sum(p.nbytes for p in parts[:-2])
    total = message_size + len(context) + len(keys)
    if area is not None and SHARED and MIN_SHARED_BYTES <= total <= MAX_SHARED_BYTES:
        slot, buffer = area
        fresh = buffer.write(parts)
        place = _IN_AREA if fresh is None else _NEW_AREA
        conn.send_bytes(_HEADER.pack(total, message_size, len(keys), place, slot, flags))
        if fresh is not None:
            send_fd(conn, fresh)
            os.close(fresh)
        return
    conn.send_bytes(_HEADER.pack(total, message_size, len(keys), _ON_SOCKET, 0, flags))
    for part in parts:
        if part.nbytes:
            conn.send_bytes(part)


def _recv_frame(conn: Connection, areas: Sequence[ReplyArea] = ()) -> _Frame:
    """Receive a frame into one buffer: the message's, the context's and the keys' bytes.

    The frame's flags come last.
    """
    total, message_size, keys_size, place, slot, flags = _HEADER.unpack(conn.recv_bytes())
    if place == _ON_SOCKET:
        buffer = bytearray(total)
        received = 0
        while received < total:
            received += conn.recv_bytes_into(buffer, received)
    else:
        if slot >= len(areas):
            raise EOFError(f"a frame names shared reply buffer {slot}, which is not there")
        area = areas[slot]
        if place == _NEW_AREA:
            area.receive(conn)
        buffer = area.read(total)
    view = memoryview(buffer)
    context_end = total - keys_size
    return view[:message_size], view[message_size:context_end], view[context_end:], flags


def _worker_main(
    conn: Connection, payload: _Payload, threads: int, device: str, parent_path: list[str]
) -> None:
    """A worker's loop: load the app, then answer tasks (on ``device``) until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    sys.path[:] = parent_path
    try:
        app = _load_in_worker(payload, threads, device)
    except Exception as err:
        conn.send_bytes(f"{type(err).__name__}: {err}".encode())
        return
    conn.send_bytes(_READY)
    frames: queue.SimpleQueue[_Frame | None] = queue.SimpleQueue()
    threading.Thread(target=_drain, args=(conn, frames), daemon=True).start()
    held, areas = SentArrays(), [ReplyArea() for _ in range(PIPELINE)]
    replies = 0
    run_config: UserConfig = {}
    while (frame := frames.get()) is not None:
        message_bytes, context_bytes, keys, flags = frame
        cached = [k.decode() for k in bytes(keys).split(_KEY_SEPARATOR)] if len(keys) else []
        message = held.restore(wire.decode(message_bytes), cached)
        context = wire.decode_context(context_bytes)
        if flags & _HELD_RUN_CONFIG:
            context = dataclasses.replace(context, run_config=run_config)
        else:  # read-only: one node must not change what the next one sees
            run_config = MappingProxyType(dict(context.run_config))
            context = dataclasses.replace(context, run_config=run_config)
        # The parent holds at most PIPELINE tasks here and copies each reply out before it
        # sends the next task: taking the buffers in turn, none is overwritten unread.
        slot = replies % PIPELINE
        _send_frame(conn, *_answer(app, message, context), area=(slot, areas[slot]))
        replies += 1


def _drain(conn: Connection, frames: queue.SimpleQueue[_Frame | None]) -> None:
    """Read the parent's task frames as they come (None once the pipe closes).

    A worker writing a reply through the socket (one too big for the shared buffer, or where
    there is none) must still take in the next task: the parent may be sending it, and two
    processes each writing to a full socket would wait for each other forever.
    """
    try:
        while True:
            frames.put(_recv_frame(conn))
    except (EOFError, OSError):
        frames.put(None)


def _answer(
    app: ClientApp, message: Message, context: Context
) -> tuple[list[bytes | memoryview], bytes, bytes]:
    """Run one task; a reply that cannot be encoded becomes an INVALID_REPLY error reply.

    Only the node's state goes back with the reply (the parent has the rest of the context),
    and the handler's measured time, packed as ``_COMPUTE``.
    """
    started = time.perf_counter()
    reply = app(message, context)
    timing = _COMPUTE.pack(time.perf_counter() - started)
    try:
        state_only = Context(context.run_id, context.node_id, state=context.state)
        return wire.encode_parts(reply), wire.encode_context(state_only), timing
    except PollinateError as err:
        error = message.reply_error(ErrorCode.INVALID_REPLY, f"the reply cannot be sent: {err}")
        return wire.encode_parts(error), b"", timing


def _load_in_worker(payload: _Payload, threads: int, device: str) -> ClientApp:
    """Load the app, set torch's threads, warm it up on ``device``: all before "ready"."""
    spec, search_path, pickled, warmup = payload
    if spec is not None:
        app = ClientAppSource(spec=spec, search_path=search_path).load()
    else:
        assert pickled is not None
        app = pickle.loads(pickled)  # the parent's own ClientApp object, never network data
    if "torch" in sys.modules:  # OMP_NUM_THREADS covers the rest; torch wants telling too
        sys.modules["torch"].set_num_threads(threads)
    if not isinstance(app, ClientApp):
        raise AppError(f"expected a ClientApp, got {type(app).__name__}")
    if warmup is not None:
        app.warm_up(with_device(wire.decode_context(warmup), device))
    return app
