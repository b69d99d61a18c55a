"""The inline backend: every node runs in this process, one after another.

Each node gets the round's timeout to itself, as it would running beside the others: a
round of N nodes may then take up to N timeouts of wall time.

Messages and contexts travel by reference: no encoding, no copies. The fastest choice for
small models and for debugging (breakpoints work inside the ClientApp). Each result carries
the handler's measured time (``compute_s``).

With ``num_gpus`` above 0 every node runs on this process's first visible GPU (``cuda:0``,
as its context's ``node_config["device"]`` says); else on ``cpu``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from ..client import ClientApp
from ._backend import Backend, ClientAppSource, Task, TaskResult, register_backend, timeout_result
from ._devices import with_device
from ._gpus import in_process_device

__all__ = ["InlineBackend"]


@register_backend
class InlineBackend(Backend):
    """Runs each task in turn in the calling process."""

    name = "inline"

    def __init__(self, num_gpus: float = 0.0) -> None:
        self.device = in_process_device(num_gpus)
        self._app: ClientApp | None = None

    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Load the ClientApp in this process and run its warm-up."""
        self._app = app.prepare(self.device)

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Run the tasks in order, each with the whole time to ``deadline`` as its own budget.

        Nodes that run in turn must not share one deadline: a node that overruns would time
        out every node after it. A handler cannot be interrupted, so a reply that took longer
        than the budget counts as a timeout once it finishes, and the next task goes on.
        """
        assert self._app is not None, "start() the backend first"
        budget = None if deadline is None else deadline - time.monotonic()
        for index, task in enumerate(tasks):
            if budget is not None and budget <= 0:  # no time at all: nothing is run
                yield timeout_result(index, task)
                continue
            started = time.monotonic()
            reply = self._app(task.message, with_device(task.context, self.device))
            compute_s = time.monotonic() - started
            if budget is not None and compute_s > budget:
                yield timeout_result(index, task)
                continue
            yield TaskResult(index, reply, task.context.state, compute_s)

    def close(self) -> None:
        """Drop the app."""
        self._app = None
