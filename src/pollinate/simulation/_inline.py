"""The inline backend: every node runs in this process, one after another.

Messages and contexts travel by reference: no encoding, no copies. The fastest choice for
small models and for debugging (breakpoints work inside the ClientApp).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from ..client import ClientApp
from ._backend import Backend, ClientAppSource, Task, TaskResult, register_backend, timeout_result

__all__ = ["InlineBackend"]


@register_backend
class InlineBackend(Backend):
    """Runs each task in turn in the calling process."""

    name = "inline"

    def __init__(self) -> None:
        self._app: ClientApp | None = None

    def start(self, app: ClientAppSource, num_nodes: int | None = None) -> None:
        """Load the ClientApp in this process."""
        self._app = app.load()

    def run(self, tasks: Sequence[Task], deadline: float | None) -> Iterator[TaskResult]:
        """Run the tasks in order; a reply finished after the deadline counts as a timeout."""
        assert self._app is not None, "start() the backend first"
        for index, task in enumerate(tasks):
            if deadline is not None and time.monotonic() >= deadline:
                yield timeout_result(index, task)
                continue
            reply = self._app(task.message, task.context)
            if deadline is not None and time.monotonic() > deadline:
                yield timeout_result(index, task)
                continue
            yield TaskResult(index, reply, task.context.state)

    def close(self) -> None:
        """Drop the app."""
        self._app = None
