"""The Ray backend: ClientApp actors on a Ray cluster, of this machine or of many.

Each actor loads the ClientApp once, runs one node at a time and is reused across rounds;
one Ray call hands it a batch of nodes, and it streams each node's reply back as it is made.
Work crosses in pollinate's wire format, never as pickled model objects: a round's model
goes into Ray's object store once, as one raw buffer, and every task of the round refers to
it; an actor decodes it once (without copying) and hands each node its own record. A reply
and the node's new state come back as wire-format buffers too. An actor that dies gives its
node an error reply and is replaced; tasks unfinished at the round's deadline time out, and
their actors are killed and replaced so that late work never reaches a later round. A run its
caller closes early (over-selection) drains its actors' batches instead, discarding the
results, and replaces only an actor still busy at the deadline or ``DRAIN_GRACE_S`` after
the close, whichever comes first.

Ray is an optional dependency (``pip install 'pollinate[ray]'``): it is imported by
``start()``, so the backend's name is known, and configs naming it validate, without it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import wire
from ..context import Context
from ..errors import AppError, ConfigError, PollinateError
from ..message import ErrorCode, Message
from ..records import ArrayRecord, RecordDict
from . import _process
from ._backend import Backend, ClientAppSource, Task, TaskResult, register_backend, timeout_result
from ._devices import CPU, GPU, with_device
from ._gpus import num_gpus_problem
from ._process import _emptied, _load_in_worker, _Payload, _same_arrays

__all__ = ["RayBackend"]

log = logging.getLogger("pollinate.simulation")

INSTALL_HINT = "pip install 'pollinate[ray]'"
_SHARED_BYTES = 64 * 1024  # array records at least this big go through the object store once
_REACH_TIMEOUT_S = 5.0
_DIRECT_REPLY_BYTES = 4 * 2**20  # a local Ray's replies this small skip the object store
_MAX_BATCH = 8  # tasks in one actor call, at most
_SHARES_PER_ACTOR = 4  # a batch is at most 1/(actors * this) of the queue
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")
_QUIET_LOGGERS = ("ray", "ray._private.authentication.authentication_token_setup")


@register_backend
class RayBackend(Backend):
    """Runs tasks on Ray actors of ``num_cpus`` CPUs and ``num_gpus`` GPUs each.

    ``ray_address`` ``""`` starts a local Ray for the run and stops it in ``close()``;
    ``"auto"``, ``"host:port"`` or ``"ray://host:port"`` joins a running cluster and leaves
    it running. ``num_actors`` defaults to as many as the cluster's nodes have room for (and
    never more than the simulation's nodes); ``ready_timeout_s`` bounds how long the actors
    may take to be placed and to load the ClientApp.
    """

    name = "ray"

    def __init__(
        self,
        ray_address: str = "",
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        num_actors: int | None = None,
        ready_timeout_s: float = 300.0,
    ) -> None:
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)):
            raise ConfigError(f"client-resources.num-cpus must be a number, got {num_cpus!r}")
        if not (math.isfinite(num_cpus) and num_cpus > 0):
            raise ConfigError(f"client-resources.num-cpus must be above 0, got {num_cpus}")
        problem = num_gpus_problem(num_gpus)
        if problem is not None:
            raise ConfigError(problem)
        if num_actors is not None and num_actors < 1:
            raise ConfigError(f"num-workers (Ray actors) must be at least 1, got {num_actors}")
        _check_address(ray_address)  # before a run folder exists; reachability waits for start
        self.ray_address = ray_address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.num_actors = num_actors
        self.ready_timeout_s = ready_timeout_s
        self._ray: Any = None
        self._connected = False
        self._actor_class: Any = None
        self._actors: list[_Actor] = []
        self._models = _SharedModels()
        self._closed = False

    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Join (or start) Ray, create the actors and wait until each has loaded the app."""
        self._ray = _import_ray()
        self._connect()
        try:
            count = self._actor_count(num_nodes)
            payload = app.for_workers()
            self._actor_class = self._ray.remote(_NodeActor).options(
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                scheduling_strategy="SPREAD",
                max_restarts=0,
            )
            self._actors = [self._spawn(payload) for _ in range(count)]
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Hand each idle actor a batch of the next tasks; yield each result as it arrives.

        One actor call per batch saves Ray's cost of a call on all but one of its tasks, and
        the actor streams each reply back as soon as it has it. Batches shrink as the queue
        empties (see ``_batch_size``), so that near a round's end an actor holds one task and
        a slow task holds up few others.
        """
        if self._closed or self._ray is None:
            raise PollinateError("the ray backend is not started, or is closed")
        queue = _Queue(tasks)
        try:
            while queue or any(actor.batch for actor in self._actors):
                if _past(deadline):
                    break
                for actor in self._actors:
                    if queue and actor.ready and not actor.batch:
                        batch = queue.take(_batch_size(len(queue), len(self._actors)))
                        actor.submit(
                            [(i, t, self._models.strip(self._ray, t.message)) for i, t in batch]
                        )
                waiting = {actor.waiting_on(): actor for actor in self._actors if actor.busy}
                done, _ = self._ray.wait(list(waiting), num_returns=1, timeout=_remaining(deadline))
                for ref in done:
                    yield from self._collect(waiting[ref], queue)
            for index, task in queue.tasks:
                yield timeout_result(index, task)
            for actor in self._actors:
                for index, task in actor.batch:
                    yield timeout_result(index, task)
        except GeneratorExit:  # closed early: keep the actors whose batches end in time
            self._drain(deadline)
            raise
        finally:
            # An actor still busy must not answer into a later round: replace it.
            for actor in [a for a in self._actors if a.batch]:
                self._replace(actor)
            self._models.forget_unused()

    def _drain(self, deadline: float | None) -> None:
        """Read and discard the rest of each actor's batch, for the grace or until ``deadline``.

        An actor that dies meanwhile is replaced; one still busy at the limit is left for
        ``run`` to replace.
        """
        limit = _process.drain_limit(deadline)
        errors = self._ray.exceptions
        while waiting := {a.waiting_on(): a for a in self._actors if a.ready and a.batch}:
            done, _ = self._ray.wait(list(waiting), num_returns=1, timeout=_remaining(limit))
            if not done:
                return
            for ref in done:
                actor = waiting[ref]
                try:
                    actor.result()
                except errors.RayActorError:
                    actor.take_rest()
                    self._replace(actor)
                except errors.RayError:  # the call failed: the rest of its batch never runs
                    actor.take_rest()

    def close(self) -> None:
        """Stop the actors, then leave Ray (stopping it if this backend started it)."""
        self._closed = True
        for actor in self._actors:
            actor.kill()
        self._actors = []
        if self._connected:
            self._connected = False
            self._ray.shutdown()

    def _connect(self) -> None:
        """Join the cluster at ``ray_address``, or start a local Ray; use one already joined."""
        ray = self._ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if not self.ray_address:
            # This machine's workers import what this process imports, as process workers do.
            path = os.pathsep.join(p for p in sys.path if p)
            runtime_env = {"env_vars": {"PYTHONPATH": path}}
            # Replies up to this size come back in the task's answer, not through the object
            # store: a third less time per task for a 400 KB model on this 2-core machine.
            direct = {"max_direct_call_object_size": _DIRECT_REPLY_BYTES}
            options.update(
                address="local",
                include_dashboard=False,
                runtime_env=runtime_env,
                _system_config=direct,
            )
        else:
            _check_reachable(self.ray_address)
            options.update(address=self.ray_address)
        with _quiet_ray():
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ConfigError(
                    f"cannot join the Ray cluster at ray-address = {self.ray_address!r} "
                    f"({_reason(err)}): start it with `ray start --head` or fix the "
                    'address; ray-address = "" starts a local Ray for the run'
                ) from None
        self._connected = True

    def _actor_count(self, num_nodes: int | None) -> int:
        """How many actors to create: what the cluster has room for, or ``num_actors``."""
        room = sum(self._room(node["Resources"]) for node in self._ray.nodes() if node["Alive"])
        need = self._need()
        if room == 0:
            raise ConfigError(
                f"no node of the Ray cluster has {need} for one actor: lower "
                "client-resources.num-cpus / num-gpus, or add a node that has them"
            )
        if self.num_actors is not None and self.num_actors > room:
            raise ConfigError(
                f"num-workers = {self.num_actors} Ray actors of {need} each do not fit: the "
                f"cluster has room for {room}; lower num-workers or add nodes"
            )
        count = self.num_actors or room
        return count if num_nodes is None else min(count, num_nodes)

    def _need(self) -> str:
        """What one actor reserves, in words: ``"1 CPU and 0.5 GPUs"``."""
        cpus = f"{self.num_cpus:g} CPU{'s' * (self.num_cpus != 1)}"
        return cpus + (
            f" and {self.num_gpus:g} GPU{'s' * (self.num_gpus != 1)}" * bool(self.num_gpus)
        )

    def _room(self, resources: Mapping[str, float]) -> int:
        """How many actors fit on a node with ``resources``."""
        fits = _times(resources.get("CPU", 0.0), self.num_cpus)
        if self.num_gpus:
            fits = min(fits, _times(resources.get("GPU", 0.0), self.num_gpus))
        return fits

    def _spawn(self, payload: _Payload) -> _Actor:
        handle = self._actor_class.remote(payload, list(sys.path), max(1, int(self.num_cpus)))
        return _Actor(self._ray, handle, payload)

    def _wait_ready(self) -> None:
        """Wait until every actor is placed and has loaded the ClientApp, or fail clearly."""
        pending = {actor.ready_ref: actor for actor in self._actors}
        done, late = self._ray.wait(
            list(pending), num_returns=len(pending), timeout=self.ready_timeout_s
        )
        for ref in done:
            pending[ref].confirm_ready()
        if late:
            raise AppError(
                f"{len(late)} of {len(pending)} Ray actors were not ready within "
                f"{self.ready_timeout_s:g} s: the cluster may lack free resources for them "
                f"(each needs {self._need()}), or loading the ClientApp hangs"
            )

    def _collect(self, actor: _Actor, queue: _Queue) -> Iterator[TaskResult]:
        """Handle what ``actor`` finished: starting up, or tasks of its batch.

        Every reply already streamed back is taken at once. A task whose call raised gets an
        error reply, and the tasks after it go back to the queue.
        """
        if not actor.ready:
            actor.confirm_ready()
            return
        errors = self._ray.exceptions
        while actor.batch:
            try:
                yield actor.result()
            except errors.RayActorError as err:
                yield from self._lost_batch(actor, queue, err)
                return
            except errors.RayError as err:
                yield actor.failed(err)
                queue.put_back(actor.take_rest(), alone=False)
                return
            if not actor.stream.next_ready():
                return

    def _lost_batch(self, actor: _Actor, queue: _Queue, err: Exception) -> Iterator[TaskResult]:
        """``actor`` died: replace it, and fail its task or run its batch's tasks one by one.

        With one task unanswered, that task was running: it fails. With more, the one that
        was running is unknown (a reply sent just before the death can be lost), so each goes
        back to the queue to run alone, and the one that kills an actor again fails then.
        """
        unanswered = actor.take_rest()
        self._replace(actor)
        if len(unanswered) == 1:
            yield _lost(*unanswered[0], err)
        else:
            queue.put_back(unanswered, alone=True)

    def _replace(self, actor: _Actor) -> None:
        """Kill ``actor`` and start a fresh one in its slot (ready later, see confirm_ready)."""
        actor.kill()
        if self._closed:
            return
        fresh = self._spawn(actor.payload)
        self._actors[self._actors.index(actor)] = fresh


class _Actor:
    """The driver's handle on one actor: whether it is ready, and the batch it runs."""

    def __init__(self, ray: Any, handle: Any, payload: _Payload) -> None:
        self.ray = ray
        self.handle = handle
        self.payload = payload
        self.ready_ref = handle.ready.remote()
        self.ready = False
        self.stream: Any = None  # the running batch's replies, one ref each (Ray streams)
        self.batch: deque[tuple[int, Task]] = deque()  # its tasks not yet answered, in order

    @property
    def busy(self) -> bool:
        """Whether the actor is starting up or running a batch."""
        return not self.ready or bool(self.batch)

    def waiting_on(self) -> Any:
        """What frees the actor or brings a reply: its start-up's ref, or its batch's stream."""
        return self.stream if self.ready and self.batch else self.ready_ref

    def confirm_ready(self) -> None:
        """Check the actor loaded the app; a failure is one clear AppError."""
        try:
            problem = self.ray.get(self.ready_ref)
        except self.ray.exceptions.RayError as err:
            raise AppError(
                f"a Ray actor could not start ({_innermost(err)}): every machine of the "
                "cluster needs pollinate, Ray and the app's dependencies installed"
            ) from None
        if problem:
            raise AppError(f"a Ray actor could not load the ClientApp: {problem}")
        self.ready = True

    def submit(self, batch: list[tuple[int, Task, tuple[Message, dict[str, Any]]]]) -> None:
        """Send a batch in one call: each message without its shared records, and contexts.

        The shared records' refs go once per batch; each task names its refs by position.
        """
        refs: list[Any] = []
        items = []
        for _, task, (message, by_key) in batch:
            positions = {}
            for key, ref in by_key.items():
                if ref not in refs:
                    refs.append(ref)
                positions[key] = refs.index(ref)
            items.append((wire.encode(message), wire.encode_context(task.context), positions))
        method = self.handle.answer_batch.options(num_returns="streaming")
        self.stream = method.remote(items, refs)
        self.batch = deque((index, task) for index, task, _ in batch)

    def result(self) -> TaskResult:
        """The next task's result; raises Ray's error if the call failed before it."""
        reply, state, compute_s = self.ray.get(next(self.stream))
        index, _ = self.batch.popleft()
        decoded_state = wire.decode_context(state).state if state else None
        return TaskResult(index, wire.decode(memoryview(reply)), decoded_state, compute_s)

    def failed(self, err: Exception) -> TaskResult:
        """The error reply for the next task, on which the actor's call raised ``err``."""
        index, task = self.batch.popleft()
        reason = f"the Ray actor failed on this task: {_first_line(err)}"
        return TaskResult(index, task.message.reply_error(ErrorCode.UNKNOWN, reason))

    def take_rest(self) -> list[tuple[int, Task]]:
        """The batch's unanswered tasks, which the actor will not answer now."""
        rest = list(self.batch)
        self.batch.clear()
        return rest

    def kill(self) -> None:
        """End the actor at once (a task it runs fails, unread)."""
        try:
            self.ray.kill(self.handle, no_restart=True)
        except Exception as err:  # already gone, or Ray is shutting down: nothing to stop
            log.debug("killing a Ray actor: %s", err)


class _Queue:
    """A round's tasks not yet sent, in order; those of a lost batch run alone."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.tasks = deque(enumerate(tasks))
        self._alone: set[int] = set()

    def __len__(self) -> int:
        return len(self.tasks)

    def take(self, size: int) -> list[tuple[int, Task]]:
        """Up to ``size`` next tasks for one call: one alone, or a run of the others."""
        batch = [self.tasks.popleft()]
        while (
            self.tasks
            and len(batch) < size
            and batch[0][0] not in self._alone
            and self.tasks[0][0] not in self._alone
        ):
            batch.append(self.tasks.popleft())
        return batch

    def put_back(self, tasks: list[tuple[int, Task]], alone: bool) -> None:
        """Return ``tasks`` to the queue's front (to run alone, one a call, if ``alone``)."""
        self.tasks.extendleft(reversed(tasks))
        if alone:
            self._alone.update(index for index, _ in tasks)


def _batch_size(queued: int, actors: int) -> int:
    """How many of ``queued`` tasks one actor takes: guided self-scheduling, capped.

    A share of the queue that shrinks with it: large batches early (few Ray calls), one task
    near the end (a slow task holds up little).
    """
    return max(1, min(_MAX_BATCH, -(-queued // (actors * _SHARES_PER_ACTOR))))


def _lost(index: int, task: Task, err: Exception) -> TaskResult:
    """The error reply for a task whose actor died while running it."""
    reason = f"the Ray actor running node {task.context.node_id} died ({_first_line(err)})"
    log.warning(reason)
    return TaskResult(index, task.message.reply_error(ErrorCode.NODE_UNAVAILABLE, reason))


class _SharedModels:
    """The big ArrayRecords put into Ray's object store, by content key: the last under each.

    A record holding the very same Array objects as the one held under its key is not put
    again: a round's model, sent to every sampled node, is put once and referred to by each.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[ArrayRecord, Any]] = {}
        self._used: set[str] = set()

    def strip(self, ray: Any, message: Message) -> tuple[Message, dict[str, Any]]:
        """``message`` with its big array records emptied, and the refs that hold them."""
        refs = {}
        for key, record in message.content.array_records.items():
            if sum(array.nbytes for array in record.values()) < _SHARED_BYTES:
                continue
            held = self._held.get(key)
            if held is None or not _same_arrays(held[0], record):
                held = self._held[key] = (ArrayRecord(record), ray.put(_pack(key, record)))
            refs[key] = held[1]
            self._used.add(key)
        return _emptied(message, refs), refs

    def forget_unused(self) -> None:
        """Drop the records no task of the last run used (their object store space is freed)."""
        self._held = {k: v for k, v in self._held.items() if k in self._used}
        self._used = set()


def _pack(key: str, record: ArrayRecord) -> np.ndarray:
    """One record in the wire format, as a byte array Ray stores as a raw buffer.

    A Context's state is the wire format's plainest container for a RecordDict.
    """
    encoded = wire.encode_context(Context(0, 0, {}, {}, RecordDict({key: record})))
    return np.frombuffer(encoded, dtype=np.uint8)


class _NodeActor:
    """Runs on the cluster: loads the ClientApp and warms it up once, then answers tasks."""

    def __init__(self, payload: _Payload, path: list[str], threads: int) -> None:
        import ray

        sys.path[:0] = [p for p in path if p not in sys.path and os.path.isdir(p)]
        self._device = GPU if ray.get_gpu_ids() else CPU
        self._held: dict[str, tuple[Any, ArrayRecord]] = {}
        self._problem = ""
        try:
            self._app = _load_in_worker(payload, threads, self._device)
        except Exception as err:  # reported by ready(), as one clear error on the driver
            self._problem = f"{type(err).__name__}: {err}"

    def ready(self) -> str:
        """``""`` once the app is loaded, else what went wrong."""
        return self._problem

    def answer_batch(
        self, items: list[tuple[bytes, bytes, dict[str, int]]], refs: list[Any]
    ) -> Iterator[tuple[np.ndarray, bytes, float]]:
        """Run a batch of tasks in order, yielding each one's reply and context as it ends.

        ``items`` are (message, context, {key: position in ``refs``}) triples.
        """
        for message_bytes, context_bytes, positions in items:
            shared = {key: refs[position] for key, position in positions.items()}
            yield self.answer(message_bytes, context_bytes, shared)

    def answer(
        self, message_bytes: bytes, context_bytes: bytes, refs: dict[str, Any]
    ) -> tuple[np.ndarray, bytes, float]:
        """Run one task: the reply and the node's context (its state), and its compute seconds."""
        message = wire.decode(message_bytes)
        for key, ref in refs.items():
            message.content[key] = ArrayRecord(self._record(key, ref))
        context = with_device(wire.decode_context(context_bytes), self._device)
        started = time.perf_counter()
        reply = self._app(message, context)
        compute_s = time.perf_counter() - started
        try:
            return _as_array(wire.encode(reply)), wire.encode_context(context), compute_s
        except PollinateError as err:
            error = message.reply_error(ErrorCode.INVALID_REPLY, f"the reply cannot be sent: {err}")
            return _as_array(wire.encode(error)), b"", compute_s

    def _record(self, key: str, ref: Any) -> ArrayRecord:
        """The shared record behind ``ref``, fetched and decoded once per actor."""
        held = self._held.get(key)
        if held is None or held[0] != ref:
            import ray

            record = wire.decode_context(memoryview(ray.get(ref))).state[key]
            assert isinstance(record, ArrayRecord)
            held = self._held[key] = (ref, record)
        return held[1]


def _as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def _import_ray() -> Any:
    """The ``ray`` module, or one clear ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f'backend = "ray" needs Ray, which is not installed: {INSTALL_HINT}'
        ) from None
    return ray


class _quiet_ray:
    """Silence Ray's own start-up warnings (token set-up and the like) while it starts."""

    def __enter__(self) -> None:
        self._levels = [(logging.getLogger(n), logging.getLogger(n).level) for n in _QUIET_LOGGERS]
        for logger, _ in self._levels:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for logger, level in self._levels:
            logger.setLevel(level)


def _times(have: float, need: float) -> int:
    """How many times ``need`` fits in ``have``: 5 for 1.0 and 0.2 (float ``//`` says 4)."""
    return math.floor(have / need + 1e-9)


def _check_address(address: str) -> None:
    """Refuse an address that is not ``""``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    if address in ("", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f'ray-address = {address!r} must be "" (a local Ray), "auto" (the cluster this '
            'machine belongs to), "HOST:PORT" or "ray://HOST:PORT"'
        )


def _check_reachable(address: str) -> None:
    """Fail at once if nothing listens at ``host:port`` (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=_REACH_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(
            f"nothing answers at ray-address = {address!r} ({err.strerror or err}): start "
            f"the cluster's head there (ray start --head --port={port}) or fix the address; "
            'ray-address = "" starts a local Ray for the run'
        ) from None


def _reason(err: BaseException) -> str:
    """The first line of ``err``, and of its cause when it has one (Ray wraps the real one)."""
    cause = err.__cause__
    return _first_line(err) + (f": {_first_line(cause)}" if cause is not None else "")


def _innermost(err: BaseException) -> str:
    """The innermost exception Ray's error text names (``ModuleNotFoundError: ...``)."""
    lines = [_ANSI.sub("", line).strip() for line in str(err).splitlines()]
    named = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return named[-1] if named else _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
