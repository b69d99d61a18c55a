"""The process backend: a pool of worker processes, each running one node at a time.

Work crosses to the workers in pollinate's wire format over pipes: arrays travel as raw
buffers and are decoded without copying, never pickled. A worker that dies or overruns the
round's deadline is replaced; its node's task becomes an error reply.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import struct
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from .. import wire
from ..client import ClientApp
from ..errors import AppError, ConfigError
from ..message import ErrorCode
from ._backend import AppRef, Backend, Task, TaskResult, register_backend, timeout_result

__all__ = ["ProcessBackend"]

log = logging.getLogger("pollinate.simulation")

_LENGTH = struct.Struct("<Q")
_READY = b"ready"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@register_backend
class ProcessBackend(Backend):
    """Runs tasks in parallel on ``num_workers`` processes with ``threads_per_worker`` each.

    The defaults split the machine's cores evenly: one thread per worker, one worker per core.
    """

    name = "process"

    def __init__(self, num_workers: int | None = None, threads_per_worker: int = 1) -> None:
        cores = os.cpu_count() or 1
        if threads_per_worker < 1:
            raise ConfigError(f"threads-per-worker must be at least 1, got {threads_per_worker}")
        self.threads_per_worker = threads_per_worker
        self.num_workers = num_workers or max(1, cores // threads_per_worker)
        if self.num_workers < 1:
            raise ConfigError(f"num-workers must be at least 1, got {num_workers}")
        self._payload: tuple[str | None, str | None, bytes | None] | None = None
        self._workers: list[_Worker] = []

    def start(self, app: AppRef) -> None:
        """Start the workers and wait until each has loaded the ClientApp."""
        self._payload = app.for_workers()
        self._workers = [self._spawn() for _ in range(self.num_workers)]
        for worker in self._workers:
            worker.wait_ready()

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Hand tasks to idle workers in order; yield results as workers finish."""
        queue = deque(enumerate(tasks))
        busy: dict[Connection, tuple[_Worker, int, Task]] = {}
        idle = list(self._workers)
        try:
            while queue or busy:
                while queue and idle:
                    worker = idle.pop()
                    index, task = queue.popleft()
                    worker.send(task)
                    busy[worker.conn] = (worker, index, task)
                remaining = None if deadline is None else deadline - time.monotonic()
                ready = wait(
                    list(busy), timeout=max(0.0, remaining) if remaining is not None else None
                )
                if not ready:  # the deadline passed
                    break
                for conn in ready:
                    worker, index, task = busy.pop(conn)  # type: ignore[call-overload]
                    result = worker.receive(index, task)
                    if result.reply.has_error and not worker.alive:
                        worker = self._replace(worker)
                    idle.append(worker)
                    yield result
            for index, task in queue:
                yield timeout_result(index, task)
            for _, index, task in list(busy.values()):
                yield timeout_result(index, task)
        finally:
            for worker, _, _ in busy.values():  # stop work whose result nobody will read
                self._replace(worker)

    def close(self) -> None:
        """Stop every worker."""
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def _spawn(self) -> _Worker:
        assert self._payload is not None
        return _Worker(self._payload, self.threads_per_worker)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.stop()
        fresh = self._spawn()
        fresh.wait_ready()
        self._workers[self._workers.index(worker)] = fresh
        return fresh


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, payload: tuple[str | None, str | None, bytes | None], threads: int) -> None:
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(
            target=_worker_main,
            args=(child, payload, threads, list(sys.path)),
            daemon=True,
            name="pollinate-worker",
        )
        self.process.start()
        child.close()

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def wait_ready(self) -> None:
        try:
            answer = self.conn.recv_bytes()
        except EOFError:
            self.process.join(5)
            raise AppError(
                f"a worker process exited (code {self.process.exitcode}) while loading the "
                "ClientApp"
            ) from None
        if answer != _READY:
            self.stop()
            raise AppError(f"a worker process could not load the ClientApp: {answer.decode()}")

    def send(self, task: Task) -> None:
        message = wire.encode(task.message)
        self.conn.send_bytes(
            _LENGTH.pack(len(message)) + message + wire.encode_context(task.context)
        )

    def receive(self, index: int, task: Task) -> TaskResult:
        try:
            data = self.conn.recv_bytes()
        except (EOFError, OSError):
            self.process.join(1)
            reason = (
                f"the worker process running node {task.context.node_id} died "
                f"(exit code {self.process.exitcode})"
            )
            log.warning(reason)
            return TaskResult(index, task.message.reply_error(ErrorCode.NODE_UNAVAILABLE, reason))
        reply, context = _split(data)
        return TaskResult(index, wire.decode(reply), wire.decode_context(context).state)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        self.conn.close()


def _split(data: bytes) -> tuple[memoryview, memoryview]:
    view = memoryview(data)
    (size,) = _LENGTH.unpack_from(view)
    start = _LENGTH.size
    return view[start : start + size], view[start + size :]


def _worker_main(
    conn: Connection,
    payload: tuple[str | None, str | None, bytes | None],
    threads: int,
    parent_path: list[str],
) -> None:
    """A worker's loop: load the app, then answer tasks until the pipe closes."""
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    sys.path[:] = parent_path
    try:
        app = _load_in_worker(payload, threads)
    except Exception as err:
        conn.send_bytes(f"{type(err).__name__}: {err}".encode())
        return
    conn.send_bytes(_READY)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        message_bytes, context_bytes = _split(data)
        context = wire.decode_context(context_bytes)
        reply = wire.encode(app(wire.decode(message_bytes), context))
        conn.send_bytes(_LENGTH.pack(len(reply)) + reply + wire.encode_context(context))


def _load_in_worker(
    payload: tuple[str | None, str | None, bytes | None], threads: int
) -> ClientApp:
    spec, search_path, pickled = payload
    if spec is not None:
        app = AppRef(spec=spec, search_path=search_path).load()
    else:
        assert pickled is not None
        app = pickle.loads(pickled)  # the parent's own ClientApp object, never network data
    if "torch" in sys.modules:  # OMP_NUM_THREADS covers the rest; torch wants telling too
        sys.modules["torch"].set_num_threads(threads)
    if not isinstance(app, ClientApp):
        raise AppError(f"expected a ClientApp, got {type(app).__name__}")
    return app
