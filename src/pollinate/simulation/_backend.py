"""The backend interface: how a batch of (message, node context) tasks gets run.

A backend gets the whole batch at once, so a vectorized backend can train many nodes in one
step, and yields one result per task as each finishes, so a pool or a Ray cluster can
stream. Adding a backend means writing one class and registering its name here.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..client import ClientApp
from ..context import Context
from ..errors import AppError, ConfigError
from ..loader import load_object
from ..message import ErrorCode, Message
from ..records import RecordDict
from ..wire import encode_context
from ._devices import CPU, with_device

__all__ = [
    "Backend",
    "ClientAppSource",
    "Task",
    "TaskResult",
    "backend_names",
    "make_backend",
    "register_backend",
]


@dataclass(frozen=True, slots=True)
class ClientAppSource:
    """How to get the ClientApp: an object in this process, or an import string for workers.

    ``warmup_context``, when given, is what each process that runs nodes hands the app's
    warm-up (``ClientApp.warmup``) before round 1; ``prepare()`` does both steps.
    """

    app: ClientApp | None = None
    spec: str | None = None
    search_path: str | None = None
    warmup_context: Context | None = None

    def load(self) -> ClientApp:
        """The ClientApp, importing it if needed."""
        if self.app is not None:
            return self.app
        if self.spec is None:
            raise AppError("no ClientApp given: pass a ClientApp, a client_fn, or an import string")
        return load_object(self.spec, ClientApp, self.search_path)

    def prepare(self, device: str = CPU) -> ClientApp:
        """The ClientApp, loaded and warmed up on ``device``: what a process does once first."""
        app = self.load()
        if self.warmup_context is not None:
            app.warm_up(with_device(self.warmup_context, device))
        return app

    def for_workers(self) -> tuple[str | None, str | None, bytes | None, bytes | None]:
        """What a worker process needs to load the app: the import string, else the object.

        The warm-up context goes along in the wire format (None: no warm-up).
        """
        warmup = None if self.warmup_context is None else encode_context(self.warmup_context)
        if self.spec is not None:
            return self.spec, self.search_path, None, warmup
        try:
            return None, self.search_path, pickle.dumps(self.app), warmup
        except Exception as err:
            raise AppError(
                "the process backend must send the ClientApp to worker processes, and this "
                f"one cannot be sent ({type(err).__name__}: {err}). Define the ClientApp (or "
                "client_fn) at module level and pass it by import string ('module:app'), "
                "or use backend='inline'"
            ) from None


@dataclass(frozen=True, slots=True)
class Task:
    """One message for one node, with that node's context."""

    message: Message
    context: Context


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The reply to ``tasks[index]`` and the node's state after it (None: unchanged).

    ``compute_s`` is the task's compute measured where it ran, in seconds (None: not run,
    or not measured): what a simulated clock scales by the node's speed.
    """

    index: int
    reply: Message
    state: RecordDict | None = field(default=None)
    compute_s: float | None = None


class Backend(ABC):
    """Runs ClientApp tasks for virtual nodes."""

    name: str = ""

    def launch(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Begin what ``start`` does without waiting (a pool spawns its workers); optional.

        A caller with its own start-up to do launches first, so both proceed together;
        ``start`` with the same arguments then finishes the job. Here: nothing to begin.
        """
        return None

    @abstractmethod
    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Get ready to run ``app`` for up to ``num_nodes`` nodes (load it, start workers)."""

    @abstractmethod
    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Yield exactly one result per task, as each finishes; timeouts after ``deadline``.

        ``deadline`` is a ``time.monotonic()`` value; a task not finished by then yields a
        TIMEOUT error reply and its late result, if any, is discarded.
        """

    @abstractmethod
    def close(self) -> None:
        """Release workers and other resources."""


def timeout_result(index: int, task: Task) -> TaskResult:
    """The result for a task that did not finish before the deadline."""
    reply = task.message.reply_error(
        ErrorCode.TIMEOUT,
        f"node {task.context.node_id} did not answer {task.message.metadata.message_type!r} "
        "before the round's timeout",
    )
    return TaskResult(index, reply)


_BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Make a backend class available by its ``name`` (a class decorator)."""
    _BACKENDS[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    """The names of the registered backends, sorted (what a federation's ``backend`` may be)."""
    return sorted(_BACKENDS)


def make_backend(name: str, **options: object) -> Backend:
    """A backend by name, with its options (``num-workers`` is passed as ``num_workers``)."""
    if name not in _BACKENDS:
        known = ", ".join(backend_names())
        raise ConfigError(f"unknown backend {name!r}; choose one of: {known}")
    try:
        return _BACKENDS[name](**options)
    except TypeError as err:
        raise ConfigError(f"backend {name!r} got bad options {sorted(options)}: {err}") from None
