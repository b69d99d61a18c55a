"""The vectorized backend: a round's train tasks for one declared model trained all at once.

A ``VectorizedClientApp`` (made by ``pollinate.simulation.vectorized.VectorizedClient``)
carries a ``BatchTrainer`` beside its ordinary handlers. This backend hands the trainer every
``train`` task of a batch that starts from the same global arrays, in chunks sized from a
memory budget; everything else (other message types, apps not declared vectorizable) runs as
on the inline backend. This module needs no torch: the trainer brings it.

A chunk's nodes train as one, so each task's ``compute_s`` is an equal share of its chunk's
training time (a simulated clock that should tell nodes with more data apart sets the
population's ``seconds_per_example``).

With ``num_gpus`` above 0 every task's context names ``cuda:0`` as its device (this process's
first visible GPU), and the trainer trains there; else ``cpu``.
"""

from __future__ import annotations

import ctypes
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from ..client import ClientApp
from ..errors import ConfigError
from ..message import MessageType
from ..records import ArrayRecord
from ._backend import Backend, ClientAppSource, Task, TaskResult, register_backend, timeout_result
from ._devices import with_device
from ._inline import InlineBackend

__all__ = ["BatchTrainer", "VectorizedBackend", "VectorizedClientApp"]

DEFAULT_MEMORY_BUDGET_MB = 1024
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


class BatchTrainer(ABC):
    """Trains many nodes' copies of one model together, one reply per task."""

    @abstractmethod
    def chunk_size(self, memory_budget: int) -> int:
        """How many nodes one chunk may hold within ``memory_budget`` bytes (at least 1)."""

    @abstractmethod
    def train_many(self, tasks: Sequence[Task]) -> list[TaskResult]:
        """The replies to ``tasks`` (train messages with equal arrays), as each would be alone.

        Result ``index`` values are positions in ``tasks``.
        """


class VectorizedClientApp(ClientApp):
    """A ClientApp whose train handler a vectorized backend may run for many nodes at once.

    Deployed, or on any other backend, it is a plain ClientApp: one message at a time.
    """

    def __init__(self, trainer: BatchTrainer) -> None:
        super().__init__()
        self.trainer = trainer

    @property
    def vectorizable(self) -> bool:
        """False once a lifespan or mods are set: the batch trainer cannot run them per node."""
        return self._lifespan is None and not self._mods


@register_backend
class VectorizedBackend(Backend):
    """Trains a round's sampled nodes together; other tasks run inline."""

    name = "vectorized"

    def __init__(
        self,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        reuse_memory: bool = True,
        num_gpus: float = 0.0,
    ) -> None:
        if not (math.isfinite(memory_budget_mb) and memory_budget_mb > 0):
            raise ConfigError(f"memory-budget-mb must be a positive number, got {memory_budget_mb}")
        self._budget = int(memory_budget_mb * 2**20)
        self._reuse_memory = reuse_memory
        self._app: ClientApp | None = None
        self._inline = InlineBackend(num_gpus)
        self.device = self._inline.device

    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Load the ClientApp in this process and run its warm-up."""
        self._app = app.load()
        self._inline.start(ClientAppSource(app=self._app, warmup_context=app.warmup_context))
        if self._reuse_memory:
            _keep_freed_memory(min(self._budget, 2**31 - 1))

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Run each group of vectorizable tasks chunk by chunk, then the rest inline.

        A chunk cannot be interrupted: if it ends after ``deadline`` its tasks time out.
        """
        assert self._app is not None, "start() the backend first"
        tasks = [Task(task.message, with_device(task.context, self.device)) for task in tasks]
        groups, rest = self._split(tasks)
        for group in groups:
            trainer = self._trainer()
            step = trainer.chunk_size(self._budget)
            for first in range(0, len(group), step):
                chunk = group[first : first + step]
                if deadline is not None and time.monotonic() >= deadline:  # no time: not run
                    yield from (timeout_result(i, tasks[i]) for i in chunk)
                    continue
                started = time.perf_counter()
                results = trainer.train_many([tasks[i] for i in chunk])
                share_s = (time.perf_counter() - started) / len(chunk)
                late = deadline is not None and time.monotonic() > deadline
                for result in results:
                    index = chunk[result.index]
                    if late:
                        yield timeout_result(index, tasks[index])
                    else:
                        yield TaskResult(index, result.reply, result.state, share_s)
        for result in self._inline.run([tasks[i] for i in rest], deadline):
            yield TaskResult(rest[result.index], result.reply, result.state, result.compute_s)

    def close(self) -> None:
        """Drop the app."""
        self._inline.close()
        self._app = None

    def _vectorizable(self) -> bool:
        return isinstance(self._app, VectorizedClientApp) and self._app.vectorizable

    def _trainer(self) -> BatchTrainer:
        assert isinstance(self._app, VectorizedClientApp)
        return self._app.trainer

    def _split(self, tasks: Sequence[Task]) -> tuple[list[list[int]], list[int]]:
        """Indices of train tasks grouped by equal global arrays, and of all other tasks."""
        groups: list[tuple[ArrayRecord, list[int]]] = []
        rest: list[int] = []
        for index, task in enumerate(tasks):
            arrays = _train_arrays(task) if self._vectorizable() else None
            if arrays is None:
                rest.append(index)
                continue
            for start, members in groups:
                if start is arrays or start == arrays:
                    members.append(index)
                    break
            else:
                groups.append((arrays, [index]))
        return [members for _, members in groups], rest


def _train_arrays(task: Task) -> ArrayRecord | None:
    """The arrays of a plain ``train`` message with exactly one ArrayRecord, else None."""
    message = task.message
    if message.metadata.message_type != MessageType.TRAIN or not message.has_content:
        return None
    records = message.content.array_records
    return next(iter(records.values())) if len(records) == 1 else None


def _keep_freed_memory(limit: int) -> None:
    """Let glibc keep freed blocks up to ``limit`` bytes for reuse (elsewhere: nothing).

    Each step allocates stacks of weights and gradients of tens of MB. By default glibc maps
    such blocks afresh and unmaps them when freed, so every step pays page faults on new
    memory, up to half of a W2 round; kept in the heap, the next step reuses them.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, limit)
        libc.mallopt(M_TRIM_THRESHOLD, limit)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): keep the defaults
        return
